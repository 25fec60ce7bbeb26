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
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from raylift.testing.benchmarks import fmt, log, machine_info, markdown_table, publish, results

NAME = "gpu_train"
TORCHRUN_NAME = "gpu_train_torchrun"
MFU_GOAL = 0.40
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
    parser.add_argument("--config", choices=sorted(CONFIGS | LLAMA_CONFIGS))
    parser.add_argument(
        "--torchrun",
        action="store_true",
        help="run under torchrun, without Ray: an hf Llama config (llama125m, llama-tiny)",
    )
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="fsdp", help="torchrun")
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
    parser.add_argument("--json", help="also write the results JSON to this file (torchrun)")
    args = parser.parse_args(argv)
    known = LLAMA_CONFIGS if args.torchrun else CONFIGS
    args.config = args.config or ("llama125m" if args.torchrun else "gpt2")
    if args.config not in known:
        parser.error(f"--config {args.config} is not for this mode (choose from {sorted(known)})")
    return args


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

    from raylift.training.flops import peak_flops

    if not torch.cuda.is_available():
        return "cpu", None
    return torch.cuda.get_device_name(0), peak_flops(torch.device("cuda:0"))


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


# --- torchrun mode: raylift's per-worker step without Ray --------------------------------------
# The device machine has no Ray. ``torchrun --standalone --nproc-per-node=N
# benchmarks/gpu_train.py --torchrun --config llama125m`` runs the same worker code
# Ray Train runs (training.setup.build_worker + training.step.optimizer_step) on a
# process group torchrun set up (NCCL on GPUs, gloo on CPU).
LLAMA_CONFIGS: dict[str, dict[str, Any]] = {
    # jobs/llm/llama-125m-gpu.yaml's model (124 M parameters: GPT-2 small's width and
    # depth, Llama blocks, a 32 K vocabulary) on the builtin corpus's bytes: ids below
    # 256, but every step computes the full 32 K-way head, as on tokenized text.
    "llama125m": {
        "model": {
            "model_type": "llama",
            "vocab_size": 32000,
            "hidden_size": 768,
            "intermediate_size": 2560,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "num_key_value_heads": 12,
            "max_position_embeddings": 1024,
            "tie_word_embeddings": True,
        },
        "context_length": 1024,
        "batch_size": 16,
        "steps": 40,
        "warmup_steps": 10,
    },
    "llama-tiny": {
        "model": {
            "model_type": "llama",
            "vocab_size": 256,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
        },
        "context_length": 64,
        "batch_size": 4,
        "steps": 6,
        "warmup_steps": 2,
    },
}


def llama_job(
    config: dict[str, Any], storage: str, strategy: str, compile_: bool
) -> dict[str, Any]:
    """The torchrun mode's job: an hf Llama from a config, bf16, on the builtin text."""
    return {
        "name": "bench-gpu-torchrun",
        "model": {"name": "hf", "params": {"config": config["model"]}},
        "data": {
            "name": "text",
            "params": {"corpus": "python-docs", "context_length": config["context_length"]},
            "batch_size": config["batch_size"],
            "val_fraction": 0.05,
        },
        "train": {
            "epochs": None,
            "max_steps": config["steps"],
            "lr": 3e-4,
            "schedule": "constant",
            "precision": "bf16",
            "compile": compile_,
        },
        "scaling": {"strategy": strategy},
        "storage": {"path": storage},
    }


def torchrun_main(args: argparse.Namespace) -> dict[str, Any] | None:
    """One rank of the torchrun mode; rank 0 returns (and publishes) the results."""
    import os

    import torch
    import torch.distributed as dist

    from raylift.specs import spec_from_dict
    from raylift.specs.resolve import resolve
    from raylift.training import flops
    from raylift.training.plan import SampleStream
    from raylift.training.setup import build_worker, load_data
    from raylift.training.step import optimizer_step

    config = dict(LLAMA_CONFIGS[args.config])
    config["steps"] = args.steps or config["steps"]
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with tempfile.TemporaryDirectory(prefix="raylift-bench-") as tmp:
            job = resolve(spec_from_dict(llama_job(config, tmp, args.strategy, args.compile)))
            data = load_data(job)
            built = time.perf_counter()
            setup = build_worker(job, data, rank=rank, world_size=world, device=device)
            stream = SampleStream(setup.plan.num_train, job.train.seed)
            tokens_per_step = setup.plan.global_batch * config["context_length"]
            step_s: list[float] = []
            losses: list[float] = []
            for step in range(config["steps"]):
                started = time.perf_counter()
                losses.append(optimizer_step(setup, stream, step * setup.plan.global_batch, rank))
                if cuda:
                    torch.cuda.synchronize(device)
                step_s.append(time.perf_counter() - started)
                if rank == 0 and (step + 1) % 5 == 0:
                    log(f"step {step + 1}: loss {losses[-1]:.3f}, {step_s[-1]:.3f} s")
            startup_s = time.perf_counter() - built - sum(step_s)
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return None
    counted = step_s[config["warmup_steps"] :] or step_s
    tokens_per_s = tokens_per_step / statistics.median(counted)
    per_token = setup.flops_per_token or 0.0
    peak = flops.peak_flops(device)
    utilisation = flops.mfu(tokens_per_s, per_token, peak, world)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    run = {
        "device": name,
        "world_size": world,
        "strategy": args.strategy,
        "compile": args.compile,
        "parameters": sum(p.numel() for p in setup.unwrapped.parameters()),
        "tokens_per_step": tokens_per_step,
        "step_s": step_s,
        "losses": losses,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": per_token,
        "bf16_peak_flops": peak,
        "mfu": utilisation,
        "startup_s": startup_s,
        "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)) if cuda else None,
    }
    summary = {"mfu": utilisation, "tokens_per_s": tokens_per_s, "mfu_goal": MFU_GOAL}
    payload = results(
        TORCHRUN_NAME, machine_info(), {"config": args.config, **config}, {"torchrun": run}, summary
    )
    mfu_text = f"{utilisation:.1%} (goal >= {MFU_GOAL:.0%})" if utilisation else "- (no GPU)"
    table = markdown_table(
        ["", "where", "value"],
        [
            ["parameters", args.config, f"{run['parameters'] / 1e6:.1f} M"],
            ["tokens/s", f"{world} x {name}, {args.strategy}, bf16", fmt(tokens_per_s, 0)],
            ["MFU", name, mfu_text],
        ],
    )
    publish(TORCHRUN_NAME, payload, table, write=not args.no_write)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.torchrun:
        return torchrun_main(args)
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
