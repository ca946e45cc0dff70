"""The HTTP shapes of health and readiness."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from services.http.schemas.orders import not_sent


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Migrations(BaseModel):
    """The database's migration and the code's newest one."""

    current: str | None
    head: str | None


class Numbering(BaseModel):
    """How far the sequencer's numbering is behind the committed events (detail: it never makes a process unready)."""

    unnumbered_events: int
    lag_seconds: float | None = Field(description="age of the oldest committed event without a position")


class ReadReplica(BaseModel):
    """The read side's database, when it is a streaming replica (detail: it never makes a process unready)."""

    lag_seconds: float | None = Field(
        description="age of the oldest event the replica does not hold yet (0: it holds every one); null: unreachable"
    )
    events_behind: int | None = Field(description="events numbered on the primary and not yet on the replica")
    error: Annotated[str, Field(description="why it cannot be reached")] = not_sent()


class LedgerState(BaseModel):
    """Whether the ledger's feeder takes the next event; when it refuses one, which and why (commands still work)."""

    status: Literal["ok", "blocked"]
    position: int | None = Field(default=None, description="the position the feeder refuses and waits at")
    reason: str | None = Field(
        default=None, description="forged, missing, unknown key, gap or backdated: see `takedown ledger quarantine`"
    )


class WitnessReadiness(BaseModel):
    """One configured ledger witness as the ledger last heard from it (detail: a witness down never makes a process
    unready; the checkpoints wait for its cosignature, nothing else does)."""

    name: str
    url: str
    cosigned_size: int = Field(description="the largest tree size it has cosigned (0: none yet)")
    cosignature_age_seconds: float | None = Field(description="since its newest cosignature arrived (null: none)")
    failures: int = Field(description="failed submissions since its last cosignature")
    last_error: str | None
    retry_at: datetime | None = Field(description="when the failed checkpoint is submitted again")


class Readiness(BaseModel):
    """Ready (`ok`) when the database answers and is at the newest migration; otherwise why not."""

    status: Literal["ok", "unavailable"]
    database: Annotated[str, Field(description="why the database cannot be reached")] = not_sent()
    migrations: Migrations = not_sent()
    numbering: Numbering = not_sent()
    read_replica: ReadReplica = not_sent()
    ledger: LedgerState = not_sent()
    witnesses: Annotated[list[WitnessReadiness], Field(description="the configured witnesses (none: absent)")] = (
        not_sent()
    )
