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
    # Peak memory per worker: {"kind": cpu_rss | cuda_allocated, "per_worker", "max"}.
    peak_memory: dict[str, Any] | None = None

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


HISTORY_FILE = "metrics.jsonl"


class MetricsHistory:
    """``<run>/metrics.jsonl``: every progress report of a run, one JSON object a line.

    Local runs append as reports arrive; on remote storage the file is rewritten
    when the driver saves the run record (``flush``).
    """

    def __init__(self, run_dir: str) -> None:
        self.path = storage.join(run_dir, HISTORY_FILE)
        self.remote = storage.is_remote(run_dir)
        self.lines: list[str] = []
        if self.remote:
            existing = storage.read_text(self.path) or ""
            self.lines = [line for line in existing.splitlines() if line.strip()]

    def add(self, event: dict[str, Any]) -> None:
        kept = {
            key: value
            for key, value in event.items()
            if isinstance(value, int | float | bool) or key == "checkpoint_reason"
        }
        kept.setdefault("time", event.get("step_end_time"))
        line = json.dumps(kept, sort_keys=True)
        if self.remote:
            self.lines.append(line)
            return
        with open(storage.local_path(self.path), "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def flush(self) -> None:
        if self.remote and self.lines:
            storage.write_text(self.path, "\n".join(self.lines) + "\n")


def read_history(run_dir: str) -> list[dict[str, Any]]:
    text = storage.read_text(storage.join(run_dir, HISTORY_FILE)) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
