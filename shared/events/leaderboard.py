"""What the model leaderboard publishes: the board of an app (or app and domain), and regression alerts.

`ModelLeaderboard` is the value on the compacted `model-leaderboard` topic (key `app_id`, or
`app_id/domain`) and the body of `GET {aggregator}/v1/leaderboard`: the shape of ARCHITECTURE.md
("Model leaderboard"), built by services/aggregator/leaderboard.py. `ModelAlert` is one transition of
the regression alarm on `model-alerts` (key `app_id`): raised, or cleared after being raised.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from shared.events.base import SCHEMA_VERSION, Contract, Domain, Id


class VersionRef(Contract):
    model: Id
    model_version: Id


class LeaderboardEntry(Contract):
    """One listed version: rated (rating, interval, rank) or not (`unrated_reason`), and its approval."""

    model: Id
    model_version: Id
    rating: float | None = Field(description="Elo-like scale: 400/ln 10 per logit, the rated versions' mean at 1000.")
    ci_low: float | None
    ci_high: float | None
    rank: int | None = Field(description="1 + the number of versions whose ci_low is above this one's ci_high.")
    wins: int = Field(ge=0)
    losses: int = Field(ge=0)
    battles: int = Field(ge=0)
    approval_rate: float | None = Field(description="Effective thumbs up / (up + down); null without votes.")
    approval_ci_low: float | None = Field(description="Equal-tailed interval of Beta(1 + up, 1 + down).")
    approval_ci_high: float | None
    votes: int = Field(ge=0, description="Effective approval votes (latest per voter and answer).")
    unrated_reason: str | None = Field(description="too_few_battles or not_connected; null when rated.")


class RemovedBattles(Contract):
    winner: VersionRef
    loser: VersionRef
    battles: int = Field(ge=0)


class FragilityEntry(Contract):
    """The fewest battles whose removal would put `lower` at or above `upper` (adjacent in the ranking)."""

    upper: VersionRef
    lower: VersionRef
    battles_to_swap: int | None = Field(description="Null when no removal along the search swaps them.")
    is_exact: bool = Field(description="False: an upper bound (the exact search was over its refit budget).")
    removed: list[RemovedBattles] = Field(description="One removal that swaps the two.")


class ModelLeaderboard(Contract):
    """Bradley-Terry ratings of the model versions of an app (or one of its domains), with how sure they are."""

    event_id: UUID = Field(description="Deterministic per board and content: the same counts repeat it.")
    schema_version: Literal[1] = SCHEMA_VERSION
    app_id: Id
    domain: Domain | None = Field(description="Null: the whole app.")
    computed_at: AwareDatetime
    battles: int = Field(ge=0, description="Live pairs whose two answers come from two different versions.")
    bootstrap_rounds: int = Field(ge=1)
    min_battles: int = Field(ge=0, description="Battles a version needs to be rated.")
    is_mle: bool = Field(description="False: no maximum-likelihood fit exists; a weak prior bounds the ratings.")
    models: list[LeaderboardEntry] = Field(description="Rated by rating (highest first), then unrated by battles.")
    fragility: list[FragilityEntry]
    reason: str | None = Field(None, description="Why no version is ranked; absent or null when some are.")


class AlertReading(Contract):
    """One version on the alert's metric: the estimate, its interval, and the evidence behind it."""

    estimate: float
    ci_low: float
    ci_high: float
    evidence: int = Field(ge=0, description="Effective votes (approval) or battles (rating).")


class ModelAlert(Contract):
    """A model's newest version against its predecessor on one metric: raised, or cleared after being raised."""

    event_id: UUID = Field(description="Deterministic per alert and transition.")
    schema_version: Literal[1] = SCHEMA_VERSION
    app_id: Id
    domain: Domain | None = Field(description="Null: the whole app's leaderboard.")
    model: Id
    previous_version: Id
    new_version: Id
    metric: Literal["approval", "rating"]
    status: Literal["raised", "cleared"]
    previous: AlertReading | None = Field(description="Null when the version has too little evidence now.")
    new: AlertReading | None
    detected_at: AwareDatetime
