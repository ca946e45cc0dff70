"""The HTTP shapes of the witness's public record: the refused submissions of signed checkpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RefusalOut(BaseModel):
    """A signed checkpoint the witness refused, and the cosigned one it was checked against."""

    id: int
    at: datetime
    origin: str
    status: int = Field(description="the add-checkpoint status it was answered with (c2sp.org/tlog-witness)")
    code: str = Field(description="why: root-mismatch and bad-consistency-proof are evidence of a fork")
    reason: str
    old_size: int
    checkpoint: str = Field(description="the submitted signed note, verifiable with the log's key")
    proof: list[str] = Field(description="the submitted consistency proof, base64 hashes")
    latest_checkpoint: str | None = Field(description="the latest cosigned note it was checked against (null: none)")


class RefusalsPage(BaseModel):
    """Refusals, oldest first; ask again with `after=next_after` for the next page."""

    items: list[RefusalOut]
    next_after: int | None = Field(description="the id to pass as `after` for the next page; null: no more")
