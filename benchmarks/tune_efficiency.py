"""Tune efficiency: ASHA vs random search with the full budget, on the very same trials.

Both sweeps run the shipped ``jobs/sweeps/digits-asha.yaml`` space through
``raylift.tuning`` (trials are raylift runs of ``jobs/digits-mlp.yaml``, one
worker each) on an embedded Ray. Both sides sample with the same seeded random searcher,
so they draw the same configurations in the same order (checked after the
run); the random-search side runs every trial for all its epochs (FIFO), the
ASHA side stops weak ones.

Per sweep: trial-epochs used (the sum over trials of the epochs each trained),
wall time, the best validation accuracy. Headlines: ``compute_fraction`` (ASHA's
trial-epochs / random search's; goal <= 1/3), ``accuracy_gap_pts`` (random's
best - ASHA's best, in points; goal <= 0.5) and ``overhead_fraction`` (sweep wall
time / (sum of the trials' own run times / max_concurrent), for the random side:
1.0 means no overhead beyond the trials themselves). Writes
``results/tune_efficiency.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from raylift.testing.benchmarks import (
    fmt,
    log,
    machine_info,
    markdown_table,
    now_iso,
    publish,
)

NAME = "tune_efficiency"
ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "jobs" / "sweeps" / "digits-asha.yaml"
COMPUTE_GOAL = 1 / 3
GAP_GOAL_PTS = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trial configurations")
    parser.add_argument("--epochs", type=int, default=16, help="epochs of a full trial")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--no-write", action="store_true", help="print; leave results/ alone")
    return parser.parse_args()


def run_side(kind: str, args: argparse.Namespace, root: str) -> dict:
    from raylift.tuning.sweep import load_sweep, run_sweep

    overrides = [
        f"storage.path={root}",
        f"name=bench-{kind}",
        f"num_samples={args.trials}",
        f"max_concurrent={args.concurrent}",
        "search.type=random",
        f"search.seed={args.seed}",
        f"trial.train.epochs={args.epochs}",
        "trial.train.checkpoint_every_epochs=1",
        "trial.train.log_every_steps=1000",
        f"scheduler.max_t={args.epochs}",
        f"scheduler.type={'asha' if kind == 'asha' else 'fifo'}",
    ]
    loaded = load_sweep(str(SWEEP), overrides)
    began = time.perf_counter()
    record = run_sweep(loaded)
    wall = time.perf_counter() - began
    trials_dir = Path(loaded.sweep.sweep_dir) / "trials"
    own = []
    for trial in record["trials"]:
        run = json.loads((trials_dir / trial["run"] / "raylift-run.json").read_text())
        finished = run.get("finished")
        if finished:
            own.append(_seconds(run["started"], finished))
    epochs = sum(int(t.get("epochs") or 0) for t in record["trials"])
    return {
        "kind": kind,
        "wall_s": round(wall, 1),
        "trial_epochs": epochs,
        "best_val_accuracy": record["best"]["best"] if record.get("best") else None,
        "trials": record["trials"],
        "finished_trial_run_s": [round(s, 1) for s in own],
        "stopped_early": sum(t["status"] == "stopped early" for t in record["trials"]),
    }


def _seconds(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from raylift.ops.connect import connect

    connect(None)
    sides = {}
    with tempfile.TemporaryDirectory(prefix="rl-tune-bench-") as root:
        for kind in ("random", "asha"):
            log(f"{kind}: {args.trials} trials x up to {args.epochs} epochs")
            sides[kind] = run_side(kind, args, root)
            log(f"  {sides[kind]['trial_epochs']} trial-epochs, {sides[kind]['wall_s']} s, best "
                f"{sides[kind]['best_val_accuracy']}")  # fmt: skip
    random, asha = sides["random"], sides["asha"]
    configs = {kind: sorted(json.dumps(t["config"], sort_keys=True) for t in side["trials"])
               for kind, side in sides.items()}  # fmt: skip
    if configs["random"] != configs["asha"]:
        raise SystemExit("the two sides sampled different configurations; not comparable")
    compute = asha["trial_epochs"] / max(random["trial_epochs"], 1)
    gap = 100 * (random["best_val_accuracy"] - asha["best_val_accuracy"])
    ideal = sum(random["finished_trial_run_s"]) / args.concurrent
    overhead = random["wall_s"] / ideal if ideal else None
    summary = {
        "compute_fraction": {"value": round(compute, 3), "goal": "<= 1/3",
                             "met": compute <= COMPUTE_GOAL},
        "accuracy_gap_pts": {"value": round(gap, 2), "goal": f"<= {GAP_GOAL_PTS}",
                             "met": gap <= GAP_GOAL_PTS},
        "overhead_fraction": {"value": round(overhead, 3) if overhead else None},
    }  # fmt: skip
    rows = [
        ["trial-epochs", random["trial_epochs"], asha["trial_epochs"], fmt(compute, 3)],
        ["best val accuracy", fmt(random["best_val_accuracy"], 4),
         fmt(asha["best_val_accuracy"], 4), f"gap {fmt(gap, 2)} pts"],
        ["wall time, s", fmt(random["wall_s"]), fmt(asha["wall_s"]),
         fmt(asha["wall_s"] / random["wall_s"], 3)],
        ["trials stopped early", random["stopped_early"], asha["stopped_early"], ""],
    ]  # fmt: skip
    markdown = markdown_table(["", "random search (full budget)", "ASHA", "ASHA / random"], rows)
    markdown += (
        f"\n\n{args.trials} digits-mlp trials (the same configurations on both sides), up to "
        f"{args.epochs} epochs, {args.concurrent} at once, 1 worker each. Goals: ASHA uses <= 1/3 "
        f"of the trial-epochs ({'met' if summary['compute_fraction']['met'] else 'NOT met'}) and "
        f"is within {GAP_GOAL_PTS} points of the best accuracy "
        f"({'met' if summary['accuracy_gap_pts']['met'] else 'NOT met'}). Tune overhead (random "
        f"side): wall time / (sum of trial run times / {args.concurrent}) = {fmt(overhead, 2)}.\n"
    )
    payload = {
        "benchmark": NAME,
        "machine": machine_info(),
        "date": now_iso(),
        "config": vars(args) | {"configurations": [json.loads(c) for c in configs["random"]]},
        "sides": sides,
        "summary": summary,
    }
    publish(NAME, payload, markdown, write=not args.no_write)


if __name__ == "__main__":
    main()
