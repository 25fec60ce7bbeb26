"""``raylift runs list|show``: runs under a storage root."""

from __future__ import annotations

import json

import click
from rich.table import Table

from raylift.cli.common import console, handle_errors
from raylift.cli.display import fmt
from raylift.errors import StorageError
from raylift.specs.job import default_storage_path


def _storage_option(func):  # type: ignore[no-untyped-def]
    return click.option(
        "--storage",
        default=None,
        metavar="PATH",
        help="Storage root (default: $RAYLIFT_STORAGE_PATH or ~/raylift/runs).",
    )(func)


@click.group()
def runs() -> None:
    """Inspect training runs."""


@runs.command("list")
@_storage_option
@handle_errors
def list_command(storage: str | None) -> None:
    """Runs under the storage root, newest first."""
    from raylift.artifacts.runs import list_runs

    root = storage or default_storage_path()
    records = list_runs(root)
    if not records:
        console.print(f"no runs under {root}", highlight=False)
        return
    table = Table("run", "status", "started", "best metric", "step", "export")
    for record in records:
        best = record.best_metric
        value = f"{best.get('name')}={fmt(best.get('value'))}" if best else "-"
        table.add_row(
            record.name,
            record.status,
            record.started,
            value,
            fmt(record.metrics.get("step", "-")),
            record.export or "-",
        )
    console.print(table)


@runs.command("show")
@click.argument("run")
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw run record.")
@handle_errors
def show_command(run: str, storage: str | None, as_json: bool) -> None:
    """Status, metrics and export of one run."""
    from dataclasses import asdict

    from raylift import storage as store
    from raylift.artifacts.runs import RunRecord

    root = storage or default_storage_path()
    record = RunRecord.load(store.join(root, run))
    if record is None:
        raise StorageError(f"no run {run!r} under {root}")
    if as_json:
        console.print_json(json.dumps(asdict(record)))
        return
    console.print(
        f"[bold]{record.name}[/]  {record.status}  started {record.started}"
        f"  finished {record.finished or '-'}  attempts {record.attempts}"
    )
    if record.error:
        console.print(f"error: {record.error}", highlight=False)
    if record.best_metric:
        console.print(
            f"best {record.best_metric.get('name')} = {fmt(record.best_metric.get('value'))}"
            f" at step {record.best_metric.get('step')}",
            highlight=False,
        )
    if record.peak_memory:
        from raylift.cli.display import memory_line

        console.print(memory_line(record.peak_memory), highlight=False)
    if record.recoveries:
        from raylift.cli.display import recovery_line

        console.print(f"{len(record.recoveries)} recoveries:", highlight=False)
        for recovery in record.recoveries:
            console.print("  " + recovery_line(recovery), highlight=False)
    table = Table("metric", "value")
    for key, value in sorted(record.metrics.items()):
        table.add_row(key, fmt(value))
    console.print(table)
    console.print(f"export: {record.export or '-'}", highlight=False)
