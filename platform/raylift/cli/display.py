"""Live training progress for a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

SHOWN = [
    ("step", "step"),
    ("epoch", "epoch"),
    ("train_loss", "loss"),
    ("val_loss", "val loss"),
    ("val_accuracy", "val acc"),
    ("val_perplexity", "val ppl"),
    ("samples_per_s", "samples/s"),
    ("tokens_per_s", "tokens/s"),
    ("mfu", "MFU"),
    ("world_size", "workers"),
    ("lr", "lr"),
]


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


class TrainDisplay:
    """Call ``update(event)`` for each reported metrics dict; use as a context manager."""

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.name = name
        self.latest: dict[str, Any] = {}
        self.started = time.monotonic()
        self.live: Live | None = None

    def __enter__(self) -> TrainDisplay:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        else:
            self.console.print(f"training {self.name} ...")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, event: dict[str, Any]) -> None:
        if "finetune" in event:  # once, before the first step
            self.console.print(f"fine-tuning: {event['finetune']}", highlight=False)
            return
        recovery = event.get("recovery")
        if recovery:
            self.console.print(recovery_line(recovery), highlight=False)
        reason = event.get("checkpoint_reason")
        if reason:
            self.console.print(
                f"checkpoint at step {event.get('step')}: {NOTICES.get(reason, reason)}",
                highlight=False,
            )
        self.latest.update({k: v for k, v in event.items() if v is not None})
        if self.live is not None:
            self.live.update(self._table())
        elif event.get("checkpoint"):
            self.console.print(self._line(), highlight=False, soft_wrap=True)

    def _line(self) -> str:
        total = self.latest.get("total_steps", "?")
        parts = [f"step {self.latest.get('step', 0)}/{total}"]
        for key, label in SHOWN[1:]:
            if key in self.latest:
                parts.append(f"{label} {fmt(self.latest[key])}")
        return "  ".join(parts)

    def _table(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"raylift train {self.name}  ({elapsed:.0f}s)", title_justify="left")
        columns = [(k, label) for k, label in SHOWN if k in self.latest] or [("step", "step")]
        for _, label in columns:
            table.add_column(label, justify="right")
        row = []
        for key, _ in columns:
            value = self.latest.get(key, "-")
            if key == "step":
                value = f"{value}/{self.latest.get('total_steps', '?')}"
            row.append(fmt(value))
        table.add_row(*row)
        return table


NOTICES = {
    "stop": "the run was asked to stop (SIGTERM to the driver, raylift jobs stop); it ends here",
    "sigterm": "a worker got SIGTERM; it exits after this checkpoint",
    "preemption": "a node is being preempted (drained)",
    "resize": "more workers fit now; the group restarts bigger from this checkpoint",
}


def recovery_line(recovery: dict[str, Any]) -> str:
    """One line for a restart or resize, as the CLI and ``runs show`` print it."""
    line = (
        f"{recovery['time']}  {recovery['kind']}: {recovery['from_workers']} -> "
        f"{recovery['to_workers']} workers, resumed from step {recovery['resumed_from_step']}, "
        f"{recovery['steps_lost']} steps lost"
    )
    if recovery.get("notice"):
        line += f" (checkpointed on notice: {recovery['notice']})"
    return line


MEMORY_KINDS = {"cpu_rss": "CPU RSS", "cuda_allocated": "CUDA max allocated"}


def memory_line(peak: dict[str, Any]) -> str:
    """Peak memory per worker, as the CLI and ``runs show`` print it."""
    per_worker = ", ".join(f"{b / 2**20:,.0f}" for b in peak.get("per_worker", []))
    kind = MEMORY_KINDS.get(str(peak.get("kind")), str(peak.get("kind")))
    return f"peak memory per worker ({kind}, MiB): {per_worker}; max {peak['max'] / 2**20:,.0f}"
