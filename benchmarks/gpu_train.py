"""Large-model training through raylift: tokens/s and MFU of a gpt in bf16 on one
worker (a GPU when there is one), and per-worker memory under DDP vs FSDP.

Phases (each a real ``run_training`` on Ray Train, on an embedded local Ray):

* **throughput**: the gpt on the builtin ``python-docs`` text, bf16 autocast, 1
  worker (``use_gpu`` when CUDA is there). tokens/s = the median of the reports'
  ``tokens_per_s`` after the first ``--warmup-reports``. MFU = tokens/s x FLOPs per
  token / the device's dense bf16 peak, FLOPs per token = 6 N + 12 L d T (N the
  parameters in matmuls, L layers, d width, T context: the PaLM paper's count,
  attention included, activation recomputation not counted). No MFU on a CPU
  (no meaningful peak).
* **memory**: the same kind of model with 2 workers, once with ``scaling.strategy:
  ddp`` and once with ``fsdp``: the parameter + optimizer bytes each worker holds
  (``model_state_bytes`` in the reports: its shards under FSDP) and the peak
  memory per worker (CUDA max allocated, or CPU RSS). ``fsdp_memory_ratio`` =
  FSDP / DDP per-worker model-state bytes. On a machine with fewer than 2 GPUs
  this phase runs on CPU workers (gloo).

``--config tiny`` is the few-second version the test suite runs on CPU;
``--config gpt2`` is the issue's ~124 M-parameter model (GPT-2 small's width, 17
blocks: a byte vocabulary has no 38 M-parameter embedding table). Writes
``results/gpu_train.json`` and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from raylift.testing.benchmarks import fmt, log, machine_info, markdown_table, publish, results

NAME = "gpu_train"
MFU_GOAL = 0.40
# Dense bf16 peak FLOP/s by device name (NVIDIA datasheets, SXM parts, no sparsity).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": {"num_layers": 2, "num_heads": 2, "embed_dim": 64},
        "context_length": 64,
        "batch_size": 8,
        "steps": 12,
        "log_every_steps": 2,
        "memory_model": {"num_layers": 2, "num_heads": 4, "embed_dim": 128},
        "memory_steps": 4,
    },
    "gpt2": {
        "model": {"num_layers": 17, "num_heads": 12, "embed_dim": 768},
        "context_length": 1024,
        "batch_size": 16,
        "steps": 60,
        "log_every_steps": 5,
        "memory_model": {"num_layers": 4, "num_heads": 8, "embed_dim": 512},
        "memory_steps": 6,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="gpt2")
    parser.add_argument("--steps", type=int, help="optimizer steps of the throughput run")
    parser.add_argument("--warmup-reports", type=int, default=2, help="reports not counted")
    parser.add_argument(
        "--compile", action="store_true", help="train.compile in the throughput run"
    )
    parser.add_argument(
        "--activation-checkpointing", action="store_true", help="in the throughput run"
    )
    parser.add_argument("--phases", default="throughput,memory", help="comma-separated")
    parser.add_argument("--storage", help="run folder root (default: a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="print; leave results/ alone")
    return parser.parse_args(argv)


def job(
    name: str,
    model: dict[str, Any],
    config: dict[str, Any],
    storage: str,
    *,
    context_length: int,
    batch_size: int,
    steps: int,
    workers: int,
    strategy: str,
    use_gpu: bool,
    extra_train: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A raylift job spec: fixed steps, constant LR, one checkpoint at the end."""
    return {
        "name": name,
        "model": {"name": "gpt", "params": model},
        "data": {
            "name": "text",
            "params": {"corpus": "python-docs", "context_length": context_length},
            "batch_size": batch_size,
            "val_fraction": 0.1,
        },
        "train": {
            "epochs": None,
            "max_steps": steps,
            "lr": 3e-4,
            "schedule": "constant",
            "precision": "bf16",
            "checkpoint_every_epochs": None,
            "log_every_steps": config["log_every_steps"],
            "max_val_batches": 2,
            "keep_checkpoints": 1,
            **(extra_train or {}),
        },
        "scaling": {
            "min_workers": workers,
            "max_workers": workers,
            "use_gpu": use_gpu,
            "strategy": strategy,
        },
        "failure": {"max_failures": 0},
        "storage": {"path": storage},
    }


def flops_per_token(model: dict[str, Any], context: int, vocab: int = 256) -> float:
    """6 N + 12 L d T with N = the parameters in matmuls (blocks and the output head)."""
    layers, width = model["num_layers"], model["embed_dim"]
    matmul_params = layers * 12 * width * width + width * vocab
    return 6.0 * matmul_params + 12.0 * layers * width * context


def device_peak() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    peak = next((flops for key, flops in BF16_PEAK.items() if key in name), None)
    return name, peak


def run(spec_dict: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], float]:
    from raylift.specs import spec_from_dict
    from raylift.training.driver import run_training

    events: list[dict[str, Any]] = []
    started = time.perf_counter()
    outcome = run_training(spec_from_dict(spec_dict), overwrite=True, on_event=events.append)
    return outcome, [e for e in events if "step" in e], time.perf_counter() - started


def throughput(args: argparse.Namespace, config: dict[str, Any], storage: str) -> dict[str, Any]:
    import torch

    use_gpu = torch.cuda.is_available()
    steps = args.steps or config["steps"]
    extra = {"compile": args.compile, "activation_checkpointing": args.activation_checkpointing}
    spec = job(
        "bench-gpu-throughput",
        config["model"],
        config,
        storage,
        context_length=config["context_length"],
        batch_size=config["batch_size"],
        steps=steps,
        workers=1,
        strategy="ddp",
        use_gpu=use_gpu,
        extra_train=extra,
    )
    log(f"throughput: {steps} steps of {config['model']} on {'GPU' if use_gpu else 'CPU'}")
    outcome, events, wall_s = run(spec)
    rates = [e["tokens_per_s"] for e in events if e.get("tokens_per_s")]
    counted = rates[args.warmup_reports :] or rates
    tokens_per_s = statistics.median(counted)
    name, peak = device_peak()
    per_token = flops_per_token(config["model"], config["context_length"])
    mfu = tokens_per_s * per_token / peak if peak else None
    return {
        "device": name,
        "use_gpu": use_gpu,
        "steps": steps,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_reports": rates,
        "flops_per_token": per_token,
        "bf16_peak_flops": peak,
        "mfu": mfu,
        "wall_s": wall_s,
        "final_train_loss": outcome.metrics.get("train_loss"),
        "peak_memory": outcome.peak_memory,
        **extra,
    }


def memory(config: dict[str, Any], storage: str) -> dict[str, Any]:
    import torch

    use_gpu = torch.cuda.device_count() >= 2
    per_strategy: dict[str, Any] = {}
    for strategy in ("ddp", "fsdp"):
        spec = job(
            f"bench-gpu-memory-{strategy}",
            config["memory_model"],
            config,
            storage,
            # Parameter and optimizer bytes do not depend on the data: short sequences.
            context_length=64,
            batch_size=4,
            steps=config["memory_steps"],
            workers=2,
            strategy=strategy,
            use_gpu=use_gpu,
        )
        log(f"memory: {strategy}, 2 workers on {'GPUs' if use_gpu else 'CPU'}")
        outcome, events, wall_s = run(spec)
        held = [e["model_state_bytes"] for e in events if "model_state_bytes" in e]
        per_strategy[strategy] = {
            "model_state_bytes": max(held),  # after the optimizer state exists
            "peak_memory": outcome.peak_memory,
            "wall_s": wall_s,
        }
    ratio = per_strategy["fsdp"]["model_state_bytes"] / per_strategy["ddp"]["model_state_bytes"]
    return {"on": "gpu" if use_gpu else "cpu", "runs": per_strategy, "fsdp_memory_ratio": ratio}


def render(summary: dict[str, Any], runs: dict[str, Any]) -> str:
    rows = []
    if "throughput" in runs:
        t = runs["throughput"]
        mfu = summary["mfu"]
        goal = (
            f" (goal >= {MFU_GOAL:.0%}: {'met' if mfu >= MFU_GOAL else 'NOT met'})" if mfu else ""
        )
        rows.append(["tokens/s, 1 worker, bf16", t["device"], fmt(summary["tokens_per_s"], 0)])
        rows.append(["MFU", t["device"], f"{mfu:.1%}{goal}" if mfu else "- (no GPU)"])
    if "memory" in runs:
        m = runs["memory"]
        ddp, fsdp = m["runs"]["ddp"], m["runs"]["fsdp"]
        rows.append(
            [
                "params + optimizer state per worker (MiB), DDP / FSDP",
                f"2 workers, {m['on']}",
                f"{ddp['model_state_bytes'] / 2**20:.1f} / {fsdp['model_state_bytes'] / 2**20:.1f}",
            ]
        )
        rows.append(["FSDP / DDP", "", f"**{summary['fsdp_memory_ratio']:.3f}**"])
    return markdown_table(["", "where", "value"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = CONFIGS[args.config]
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    machine = machine_info()
    from raylift.ops.connect import connect

    connect(dashboard=False)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raylift-bench-") as tmp:
        storage = args.storage or tmp
        if "throughput" in phases:
            runs["throughput"] = throughput(args, config, storage)
        if "memory" in phases:
            runs["memory"] = memory(config, storage)
    summary = {
        "mfu": runs.get("throughput", {}).get("mfu"),
        "tokens_per_s": runs.get("throughput", {}).get("tokens_per_s"),
        "fsdp_memory_ratio": runs.get("memory", {}).get("fsdp_memory_ratio"),
        "mfu_goal": MFU_GOAL,
    }
    payload = results(NAME, machine, {"config": args.config, **config}, runs, summary)
    publish(NAME, payload, render(summary, runs), write=not args.no_write)
    return payload


if __name__ == "__main__":
    main()
