"""Static checks of docker-compose.yml, the Dockerfile, .dockerignore and the lock files (no Docker engine here)."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.utils import canonicalize_name

from services.aggregator.settings import AggregatorSettings
from services.feedback.settings import FeedbackSettings
from services.ingest.settings import IngestSettings
from shared.security_settings import SECRET_SETTING
from shared.settings import PipelineSettings
from tests.support.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROD = yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())
SECRETS_DIR = "/run/secrets/"
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
SETTINGS = {"ingest": IngestSettings, "feedback": FeedbackSettings, "aggregator": AggregatorSettings}
RUNTIME_LOCK, DEV_LOCK, DOCKERIGNORE = (
    ROOT / "requirements.lock",
    ROOT / "requirements-dev.lock",
    ROOT / ".dockerignore",
)
COPY_SOURCES = [
    path for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", DOCKERFILE, flags=re.M) for path in source.split()
]
FIRST_PARTY = {"shared", "services", "deploy"}


def test_compose_runs_every_service_from_one_image_after_init() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "postgres", "init", "ingest", "feedback", "aggregator"} <= set(services)
    images = {services[name]["image"] for name in ("init", *SETTINGS)}
    assert len(images) == 1
    for name in SETTINGS:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").exists()
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"] == ["python", "-m", "deploy.init"]
    assert (ROOT / "deploy" / "init.py").exists()


def test_compose_ports_match_the_services_default_ports() -> None:
    for name, settings_class in SETTINGS.items():
        port = settings_class.model_fields["http_port"].default
        service = COMPOSE["services"][name]
        assert service["ports"] == [f"{port}:{port}"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_compose_environment_names_real_settings() -> None:
    env = COMPOSE["services"]["ingest"]["environment"]
    known = {name.upper() for name in PipelineSettings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    kafka_env = COMPOSE["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "the project creates its own topics"
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_requires_app_keys_of_every_service() -> None:
    for name in SETTINGS:
        env = COMPOSE["services"][name]["environment"]
        assert env["APP_KEYS_REQUIRED"] == "true", f"{name}: apps must write only their own app_id"
        assert merged_environment(name)["APP_KEYS_REQUIRED"] == "true", "the production override keeps app keys on"


def test_dockerfile_copies_what_exists_and_binds_every_interface() -> None:
    for source in COPY_SOURCES:
        assert (ROOT / source).exists(), f"COPY source {source} missing"
    for name in SETTINGS:
        assert f"{name.upper()}_HTTP_HOST=0.0.0.0" in DOCKERFILE


def test_the_image_installs_the_runtime_pins_only() -> None:
    assert re.findall(r"pip install (.+?)(?:\s*\\|$)", DOCKERFILE, flags=re.M) == ["-r requirements.lock"]
    assert "requirements-dev.lock" not in DOCKERFILE
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, version = _pin(requirement)
        assert runtime.get(name) == version, f"{name} is a runtime dependency: pin it in requirements.lock"
    for group in project["optional-dependencies"].values():
        for requirement in group:
            name, version = _pin(requirement)
            assert name not in runtime, f"{name} (local or dev) must not reach the image"
            assert dev.get(name) == version, f"{name} missing from requirements-dev.lock"
    for tool in ("pytest", "hypothesis", "schemathesis", "pyyaml", "ruff", "httpx", "datasets", "playwright"):
        assert tool not in runtime
    assert not runtime.keys() & dev.keys(), "each package is pinned once"
    assert DEV_LOCK.read_text().splitlines()[1] == "-r requirements.lock", "the dev lock builds on the runtime one"


def test_the_code_in_the_image_imports_only_what_the_runtime_lock_installs() -> None:
    distributions = metadata.packages_distributions()
    runtime = pins(RUNTIME_LOCK)
    missing = set()
    for path in image_python_files():
        for module in third_party_imports(path):
            names = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not names & runtime.keys():
                missing.add(f"{path.relative_to(ROOT)}: {module}")
    assert not missing, sorted(missing)


def test_the_build_context_leaves_out_local_state_and_keeps_what_the_image_copies() -> None:
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert {".venv", ".run", ".git"} <= set(ignored)
    for source in [*COPY_SOURCES, "requirements.lock"]:
        assert not any(fnmatch.fnmatch(source, pattern) or source.startswith(pattern + "/") for pattern in ignored)


def pins(path: Path) -> dict[str, str]:
    return dict(_pin(line) for line in path.read_text().splitlines() if "==" in line)


def _pin(requirement: str) -> tuple[str, str]:
    name, version = requirement.split("==")
    return canonicalize_name(name.split("[")[0]), version.strip()


def image_python_files() -> list[Path]:
    files = []
    for source in COPY_SOURCES:
        path = ROOT / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.suffix == ".py" else []
    return files


def third_party_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in FIRST_PARTY}


# The production override (docker-compose.prod.yml), checked the same way: statically, then its settings loaded.


def merged_environment(service: str) -> dict[str, str]:
    """The service's environment once the override is merged over docker-compose.yml (mappings merge key by key)."""
    return {**COMPOSE["services"][service]["environment"], **PROD["services"][service]["environment"]}


def interpolated(value: Any, shell: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` with `shell` as the environment."""

    def one(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3)
        if shell.get(name):
            return shell[name]
        assert operator != ":?", f"{name} is required: {word}"
        return word if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def test_the_override_points_every_service_at_sasl_ssl_and_tls_postgres() -> None:
    for name in ("init", *SETTINGS):
        env = merged_environment(name)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_PASSWORD_FILE"].startswith(SECRETS_DIR) and "KAFKA_SASL_PASSWORD" not in env
        assert env["DATABASE_URL"] == "" and env["DATABASE_URL_FILE"].startswith(SECRETS_DIR)
        assert env["DATABASE_SSL_ROOT_CERT"].startswith(SECRETS_DIR)
        known = {n.upper() for n in PipelineSettings.model_fields}
        secret = {n.upper() for n, f in PipelineSettings.model_fields.items() if f.json_schema_extra == SECRET_SETTING}
        assert set(env) <= known | {f"{n}_FILE" for n in secret}, set(env) - known


def test_the_override_mounts_every_secret_file_it_names() -> None:
    defined = PROD["secrets"]
    for name in ("init", *SETTINGS):
        mounted = set(PROD["services"][name]["secrets"])
        named = {
            v.removeprefix(SECRETS_DIR) for v in merged_environment(name).values() if str(v).startswith(SECRETS_DIR)
        }
        assert named == mounted and mounted <= set(defined), (name, named, mounted)
    for secret in defined.values():
        assert secret["file"].startswith("./secrets/")
    ignored = DOCKERIGNORE.read_text().splitlines()
    assert "secrets" in ignored, "secret files must stay out of the build context"


def test_the_override_leaves_out_the_local_servers() -> None:
    for name in ("kafka", "postgres"):
        assert PROD["services"][name]["profiles"] == ["local-servers"]
    dependencies = PROD["services"]["init"]["depends_on"]
    assert set(dependencies) == set(COMPOSE["services"]["init"]["depends_on"])
    assert all(dependency["required"] is False for dependency in dependencies.values())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_the_overrides_settings_load_as_a_service_would_read_them(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "kafka_password": "kafka-secret\n",
        "kafka_ca": pki.ca.read_text(),
        "database_url": "postgresql://pipeline:db-secret@db.example.com:5432/pipeline?sslmode=verify-full\n",
        "database_ca": pki.ca.read_text(),
    }
    for name, content in secrets.items():
        (tmp_path / name).write_text(content)
    shell = {"KAFKA_BOOTSTRAP_SERVERS": "b-1.example.com:9096", "KAFKA_SASL_USERNAME": "pipeline", "ADMIN_TOKEN": "t"}
    for name in list(os.environ):
        if name.upper() in {n.upper() for n in PipelineSettings.model_fields}:
            monkeypatch.delenv(name)
    for name, value in merged_environment("feedback").items():
        monkeypatch.setenv(name, interpolated(value, shell).replace(SECRETS_DIR, f"{tmp_path}/"))
    settings = FeedbackSettings()
    assert (
        settings.kafka_sasl_password is not None and settings.kafka_sasl_password.get_secret_value() == "kafka-secret"
    )
    assert settings.database_url.endswith("?sslmode=verify-full") and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.topic_replication_factor == 3
    assert settings.app_keys_required is True
