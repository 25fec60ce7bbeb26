"""Ray Train overhead: raylift vs a hand-written ``torchrun`` DDP loop, same work.

Both sides train the raylift ``mlp`` on ``digits`` with 2 gloo workers, the same
per-worker batch, AdamW learning rate and number of optimizer steps. Repeats
alternate which side goes first. Per repeat:

* samples/s: samples trained / loop seconds. raylift: the final report's
  ``samples_seen / train_time_s`` (the loop's wall time on rank 0, Ray's report
  barriers included, validation and the final checkpoint not). torchrun: the
  script's own first-to-last-step time.
* start-up s: everything but the loop. raylift: ``run_training`` wall time minus
  ``train_time_s`` (worker group, data load, final validation, checkpoint and
  export). torchrun: process wall time minus loop time.

``ray.init`` (an embedded Ray) is timed once, as ``ray_init_s``. Writes
``results/train_overhead.json`` and ``.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raylift.testing.benchmarks import (
    ForeignCpu,
    cpu_times,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    now_iso,
    publish,
)

NAME = "train_overhead"
GOAL = 0.95
# A run during which other processes used more than this many CPU cores on average
# is flagged as disturbed (2 cores: even half a core elsewhere shifts the numbers).
DISTURBED_CORES = 0.1
TORCHRUN_SCRIPT = Path(__file__).resolve().parent / "torchrun_ddp.py"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--hidden", default="1024,1024", help="MLP hidden sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=64, help="examples per worker per step")
    parser.add_argument("--workers", type=int, default=2, help="data-parallel workers")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--log-every", type=int, default=50, help="raylift log_every_steps")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave results/ alone"
    )
    return parser.parse_args()


def job_dict(args: argparse.Namespace, hidden: list[int], storage: str) -> dict[str, Any]:
    """The raylift job: fixed steps, constant LR, one checkpoint at the end."""
    return {
        "name": "bench-train-overhead",
        "model": {"name": "mlp", "params": {"hidden_sizes": hidden}},
        "data": {"name": "digits", "batch_size": args.batch, "val_fraction": 0.2, "seed": 0},
        "train": {
            "epochs": None,
            "max_steps": args.steps,
            "optimizer": "adamw",
            "lr": args.lr,
            "weight_decay": 0.0,
            "schedule": "constant",
            "warmup_steps": 0,
            "precision": "fp32",
            "seed": 0,
            "checkpoint_every_epochs": None,
            "checkpoint_every_steps": None,
            "keep_checkpoints": 1,
            "log_every_steps": args.log_every,
        },
        "scaling": {"min_workers": args.workers, "max_workers": args.workers},
        "failure": {"max_failures": 0},
        "storage": {"path": storage},
    }


def run_raylift(spec: Any) -> dict[str, Any]:
    from raylift.training.driver import run_training

    start = time.perf_counter()
    outcome = run_training(spec, overwrite=True)
    wall_s = time.perf_counter() - start
    metrics = outcome.metrics
    samples, loop_s = int(metrics["samples_seen"]), float(metrics["train_time_s"])
    return {
        "samples": samples,
        "steps": int(metrics["step"]),
        "loop_s": loop_s,
        "wall_s": wall_s,
        "samples_per_s": samples / loop_s,
        "startup_s": wall_s - loop_s,
        "train_loss": metrics.get("train_loss"),
        "val_accuracy": metrics.get("val_accuracy"),
    }


def run_torchrun(args: argparse.Namespace, save_dir: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(args.workers),
        str(TORCHRUN_SCRIPT),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--hidden",
        args.hidden,
        "--lr",
        str(args.lr),
        "--log-every",
        str(args.log_every),
        "--save-dir",
        save_dir,
    ]
    # Ray gives each 1-CPU worker OMP_NUM_THREADS=1 (so torch uses 1 intra-op thread).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"torchrun failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}"
        )
    result = json.loads(lines[-1])
    loop_s = float(result["loop_s"])
    return {
        "samples": int(result["samples"]),
        "steps": int(result["steps"]),
        "loop_s": loop_s,
        "wall_s": wall_s,
        "samples_per_s": result["samples"] / loop_s,
        "startup_s": wall_s - loop_s,
        "train_loss": result["train_loss"],
        "torch_threads": result["torch_threads"],
    }


def summarise(runs: dict[str, list[dict[str, Any]]], ray_init_s: float) -> dict[str, Any]:
    ray_sps = median([r["samples_per_s"] for r in runs["raylift"]])
    torch_sps = median([r["samples_per_s"] for r in runs["torchrun"]])
    ratio = ray_sps / torch_sps
    return {
        "throughput_ratio": {"value": round(ratio, 4), "goal": f">= {GOAL}", "met": ratio >= GOAL},
        "raylift_samples_per_s_median": round(ray_sps, 1),
        "torchrun_samples_per_s_median": round(torch_sps, 1),
        "raylift_startup_s_median": round(median([r["startup_s"] for r in runs["raylift"]]), 2),
        "torchrun_startup_s_median": round(median([r["startup_s"] for r in runs["torchrun"]]), 2),
        "ray_init_s": round(ray_init_s, 2),
    }


def render(
    summary: dict[str, Any], config: dict[str, Any], machine: dict[str, Any], disturbed: int
) -> str:
    ratio = summary["throughput_ratio"]
    verdict = "met" if ratio["met"] else "NOT met"
    table = markdown_table(
        ["", "raylift (Ray Train)", "torchrun DDP", "raylift / torchrun"],
        [
            [
                "samples/s (median)",
                fmt(summary["raylift_samples_per_s_median"], 0),
                fmt(summary["torchrun_samples_per_s_median"], 0),
                f"**{ratio['value']:.3f}** (goal {ratio['goal']}: {verdict})",
            ],
            [
                "start-up s (median)",
                fmt(summary["raylift_startup_s_median"]),
                fmt(summary["torchrun_startup_s_median"]),
                "",
            ],
            ["`ray.init` s (once)", fmt(summary["ray_init_s"]), "-", ""],
        ],
    )
    caption = (
        f"MLP {config['model']['hidden_sizes']} on digits, {config['workers']} workers (gloo), "
        f"batch {config['batch_per_worker']}/worker, {config['steps']} steps, "
        f"median of {config['repeats']}; {machine['cpu_cores']} CPU cores, "
        f"GPU {machine['gpu']}, torch {machine['torch']}, ray {machine['ray']}."
    )
    if disturbed:
        caption += (
            f" **{disturbed} of {2 * config['repeats']} runs shared the CPUs with other "
            "processes: noisy.**"
        )
    return f"{table}\n\n{caption}\n"


def main() -> None:
    args = parse_args()
    hidden = [int(size) for size in args.hidden.split(",") if size]
    machine = machine_info()
    if (machine["cpu_busy_at_start"] or 0.0) > 0.1:
        log(
            f"warning: the CPUs were {machine['cpu_busy_at_start']:.0%} busy before the "
            "benchmark started; other work on the machine skews the numbers"
        )

    from raylift.ops.connect import connect, disconnect
    from raylift.specs import spec_from_dict

    start = time.perf_counter()
    connect(num_cpus=args.workers, dashboard=False)
    ray_init_s = time.perf_counter() - start
    log(f"ray.init: {ray_init_s:.1f} s")

    runs: dict[str, list[dict[str, Any]]] = {"raylift": [], "torchrun": []}
    with (
        tempfile.TemporaryDirectory(prefix="raylift-bench-") as tmp,
        ForeignCpu() as foreign,
    ):
        spec = spec_from_dict(job_dict(args, hidden, os.path.join(tmp, "runs")))
        try:
            for repeat in range(args.repeats):
                order = ["raylift", "torchrun"] if repeat % 2 == 0 else ["torchrun", "raylift"]
                for side in order:
                    before, foreign_before = cpu_times(), foreign.seconds
                    result = run_raylift(spec) if side == "raylift" else run_torchrun(args, tmp)
                    after = cpu_times()
                    result["repeat"] = repeat
                    result["foreign_cpu_s"] = round(foreign.seconds - foreign_before, 2)
                    result["disturbed"] = (
                        result["foreign_cpu_s"] > DISTURBED_CORES * (result["wall_s"])
                    )
                    if before and after:  # CPU time the hypervisor took away during the run
                        result["cpu_steal_s"] = round(after["steal"] - before["steal"], 2)
                    runs[side].append(result)
                    log(
                        f"repeat {repeat + 1}/{args.repeats} {side:8s}: "
                        f"{result['samples_per_s']:8.1f} samples/s, loop {result['loop_s']:.1f} s, "
                        f"start-up {result['startup_s']:.1f} s, other processes "
                        f"{result['foreign_cpu_s']:.1f} CPU-s"
                        + (" (DISTURBED)" if result["disturbed"] else "")
                    )
        finally:
            disconnect()
    disturbed = sum(r["disturbed"] for side in runs.values() for r in side)
    if disturbed:
        log(
            f"warning: {disturbed} run(s) shared the CPUs with other processes; "
            "rerun on a quiet machine before trusting the numbers"
        )

    summary = summarise(runs, ray_init_s)
    config = {
        "model": {"name": "mlp", "hidden_sizes": hidden},
        "data": "digits (val_fraction 0.2)",
        "steps": args.steps,
        "batch_per_worker": args.batch,
        "global_batch": args.batch * args.workers,
        "workers": args.workers,
        "backend": "gloo",
        "optimizer": f"adamw lr={args.lr}",
        "log_every_steps": args.log_every,
        "repeats": args.repeats,
        "threads_per_worker": "OMP_NUM_THREADS=1 (Ray's default for a 1-CPU worker; "
        "set explicitly for torchrun)",
    }
    payload = {
        "benchmark": NAME,
        "machine": machine,
        "date": now_iso(),
        "config": config,
        "runs": runs,
        "summary": summary,
        "disturbed_runs": disturbed,
    }
    markdown = render(summary, config, machine, disturbed)
    publish(NAME, payload, markdown, write=not args.no_write)


if __name__ == "__main__":
    main()
