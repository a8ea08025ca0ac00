"""The pipeline's error hierarchy: code decides by type, boundaries log and dead-letter by `code`."""

from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    code = "pipeline_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def to_log_context(self) -> dict[str, Any]:
        return {"error_code": self.code, "error": self.message, **self.context}


class ContractError(PipelineError):
    """A payload that breaks the contract: permanent, never retried.

    `errors` lists each bad field as `{"loc": [...], "msg": ..., "type": ...}` (pydantic's shape).
    """

    code = "contract_violation"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.errors = errors or []

    def to_log_context(self) -> dict[str, Any]:
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in self.errors]
        return {**super().to_log_context(), "fields": fields}


class TransientError(PipelineError):
    """The database or broker is unavailable: retry later, do not commit the offset."""

    code = "transient"


class ProcessingError(PipelineError):
    """A message valid by contract that could not be processed (a bug, or state the rules never met).

    Permanent: it is dead-lettered with this code so that its partition keeps flowing.
    """

    code = "processing_failed"


class NotFoundError(PipelineError):
    code = "not_found"


class ConflictError(PipelineError):
    """A write that conflicts with existing state (keeps the violated constraint's name)."""

    code = "conflict"


class AuthError(PipelineError):
    """Missing or invalid credentials (HTTP 401)."""

    code = "unauthenticated"


class ForbiddenError(PipelineError):
    """Valid credentials, but outside their scope (HTTP 403)."""

    code = "forbidden"


class ConfigurationError(PipelineError):
    """Settings that cannot work (e.g. a CA that does not sign the server's certificate): permanent, never retried."""

    code = "misconfigured"


class ForbiddenSourceError(ContractError):
    """An app's vote that claims expert evidence (source expert, a verdict, an expert-only field): refused."""

    code = "forbidden_source"


class CrossGroupComparisonError(ContractError):
    """A comparison of two answers to different prompts: no pair can come of it, so it is refused."""

    code = "cross_group_comparison"
