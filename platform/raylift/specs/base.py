"""Shared base for every spec model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """extra="forbid": an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
