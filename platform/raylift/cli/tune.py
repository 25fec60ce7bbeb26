"""``raylift tune``: a hyperparameter sweep over the same trainer, with Ray Tune."""

from __future__ import annotations

from typing import Any

import click
from rich.live import Live
from rich.table import Table

from raylift.cli.common import State, address_option, console, handle_errors, set_option
from raylift.cli.display import fmt


class SweepDisplay:
    """A live trial table on a terminal; a line per trial state change otherwise."""

    def __init__(self, name: str, metric: str, keys: list[str]) -> None:
        self.name, self.metric, self.keys = name, metric, keys
        self.live: Live | None = None
        self.seen: dict[str, str] = {}

    def __enter__(self) -> SweepDisplay:
        if console.is_terminal:
            self.live = Live(self._table([]), console=console, refresh_per_second=2)
            self.live.__enter__()
        else:
            console.print(f"sweeping {self.name} ...", highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, rows: list[Any]) -> None:
        if self.live is not None:
            self.live.update(self._table(rows))
            return
        for row in rows:
            if self.seen.get(row.trial_id) != row.status:
                self.seen[row.trial_id] = row.status
                console.print(
                    f"trial {row.trial_id} {row.status}: {_params(row.config, self.keys)}"
                    + (f"  best {self.metric} {fmt(row.best)}" if row.best is not None else ""),
                    highlight=False,
                )

    def _table(self, rows: list[Any]) -> Table:
        table = Table("trial", "status", *self.keys, "epoch", self.metric, f"best {self.metric}")
        for row in rows:
            table.add_row(
                row.trial_id,
                row.status,
                *[fmt(row.config.get(key, "-")) for key in self.keys],
                fmt(row.last.get("epoch", "-")),
                fmt(row.last.get(self.metric, "-")),
                fmt(row.best) if row.best is not None else "-",
            )
        return table


def _params(config: dict[str, Any], keys: list[str]) -> str:
    return " ".join(f"{key}={fmt(config[key])}" for key in keys if key in config)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@address_option
@set_option
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep of the same name.")
@click.option("--dry-run", is_flag=True, help="Check the sweep and its space; start nothing.")
@handle_errors
def tune(
    file: str, address: str | None, overrides: tuple[str, ...], resume: bool, dry_run: bool
) -> None:
    """Sweep the hyperparameters in FILE (a sweep spec) over its base job, with Ray Tune."""
    from raylift.tuning.sweep import load_sweep

    loaded = load_sweep(file, list(overrides))
    sweep = loaded.sweep
    keys = list(sweep.space)
    if dry_run:
        console.print(
            f"{file}: ok (sweep {sweep.name!r} over {loaded.sweep.base}: "
            f"{', '.join(keys)}; {loaded.mode} {loaded.metric})",
            highlight=False,
        )
        return
    from raylift.ops.connect import connect
    from raylift.tuning.sweep import run_sweep

    where = connect(address, verbose=State.verbose)
    console.print(f"{sweep.name}: sweeping on {where}; folder {sweep.sweep_dir}", highlight=False)
    with SweepDisplay(sweep.name, loaded.metric, keys) as display:
        record = run_sweep(loaded, resume=resume, on_update=display.update)
    _leaderboard(record, keys)


def _leaderboard(record: dict[str, Any], keys: list[str]) -> None:
    metric = record["metric"]
    table = Table("#", "trial", *keys, f"best {metric}", "epochs", "status", title="leaderboard")
    for rank, row in enumerate(record["trials"], start=1):
        table.add_row(
            str(rank),
            row["trial"],
            *[fmt(row["config"].get(key, "-")) for key in keys],
            fmt(row["best"]) if row["best"] is not None else "-",
            fmt(row.get("epochs") or "-"),
            row["status"],
        )
    console.print(table)
    best = record["best"]
    params = _params(best["config"], keys)
    console.print(
        f"best trial {best['trial']}: {metric} = {fmt(best['best'])} ({params})", highlight=False
    )
    console.print(f"best model: {best['export']}", highlight=False)
