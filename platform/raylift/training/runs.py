"""The run record ``<storage>/<run>/raylift-run.json`` and listing runs."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from raylift import storage

RECORD_FILE = "raylift-run.json"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """What ``raylift runs list/show`` reads; written by the driver."""

    name: str
    status: str  # running | succeeded | failed | stopped
    started: str
    finished: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    best_metric: dict[str, Any] = field(default_factory=dict)
    export: str | None = None
    error: str | None = None
    attempts: int = 1
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    # Set when the run started from another run's checkpoint (PBT's exploit step).
    started_from: dict[str, Any] | None = None

    def save(self, run_dir: str) -> None:
        storage.write_text(storage.join(run_dir, RECORD_FILE), json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: str) -> RunRecord | None:
        text = storage.read_text(storage.join(run_dir, RECORD_FILE))
        if text is None:
            return None
        raw = json.loads(text)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def list_runs(root: str) -> list[RunRecord]:
    """Every run with a record under the storage root, newest first."""
    records = [RunRecord.load(storage.join(root, name)) for name in storage.list_dirs(root)]
    found = [r for r in records if r is not None]
    return sorted(found, key=lambda r: r.started, reverse=True)
