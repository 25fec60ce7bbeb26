"""int8 method choice for serving: torchao vs torch.ao ``quantize_dynamic``, eager and compiled.

Candidates, each applied to a copy of the same trained model:

* ``torchao.int8_dynamic``: ``torchao.quantization.quantize_(model,
  Int8DynamicActivationInt8WeightConfig())`` (per-row int8 weights, per-token int8
  activations), in eager mode and under ``torch.compile`` with inductor's
  ``freezing`` on (its CPU int8 path; ``dynamic=False``, one compilation per batch size);
* ``torch.ao.quantize_dynamic``: ``quantize_dynamic(model, {nn.Linear},
  dtype=torch.qint8)`` (per-tensor int8 weights, fbgemm/x86 kernels), eager;
* ``torch.ao.quantize_dynamic.per_channel``: the same with
  ``per_channel_dynamic_qconfig`` (per-channel weights), eager.

against the plain float32 model, eager and compiled the same way. Models: the
raylift ``mlp`` with hidden sizes ``[1024, 1024]`` trained on ``digits`` (batch 1
and 64) and the ``gpt`` of ``jobs/tinygpt-pretrain.yaml`` (2 layers, 4 heads,
width 128, context 64; forward of one full-context sequence), both trained
in-process for a few hundred steps with ``raylift.testing.exports`` and exported, so the
accuracies are those the serving gate would see.

Timing: in each round every variant runs ``calls`` forwards under
``torch.inference_mode()`` and keeps the median; the result is the median over
rounds, and the order of the variants rotates between rounds. Speedups are
relative to the plain model in eager mode (what a replica runs). Sizes are the
bytes of the serialized state_dict. Accuracy: the export's held-out sample (the
serving gate's measure; 64 rows, so one flipped prediction is 1.56 points) and,
for digits, the whole validation split. Writes ``results/quantize_choice.json``
and ``.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raylift.testing.benchmarks import (
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    package_version,
    publish,
    results,
)

NAME = "quantize_choice"
GOAL_SPEEDUP_BS1 = 2.0
GOAL_SIZE_RATIO = 3.5
GOAL_MAX_DROP_PTS = 0.5
TAO = "torchao.int8_dynamic"
QD = "torch.ao.quantize_dynamic"
QD_PC = "torch.ao.quantize_dynamic.per_channel"
METHODS = [TAO, QD, QD_PC]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (default 7)")
    parser.add_argument(
        "--block-s", type=float, default=0.1, help="seconds per variant per round (default 0.1)"
    )
    parser.add_argument("--hidden", default="1024,1024", help="MLP hidden sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--mlp-steps", type=int, default=300, help="MLP training steps")
    parser.add_argument("--gpt-steps", type=int, default=200, help="gpt training steps")
    parser.add_argument("--no-compile", action="store_true", help="eager variants only")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave results/ alone"
    )
    return parser.parse_args()


def quantizers() -> dict[str, Callable[[Any], Any]]:
    """Method name -> function returning an int8 copy; the shipped method goes through
    ``raylift.serving.quantize.quantize_int8`` so the benchmark measures what serving runs."""
    import torch
    from torch import nn

    from raylift.serving.quantize import INT8_METHOD, quantize_int8

    def torchao_int8(model: nn.Module) -> nn.Module:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantized = copy.deepcopy(model).eval()
        quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
        return quantized

    def quantize_dynamic(model: nn.Module, per_channel: bool = False) -> nn.Module:
        from torch.ao.quantization import per_channel_dynamic_qconfig
        from torch.ao.quantization import quantize_dynamic as qd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec: Any = {nn.Linear: per_channel_dynamic_qconfig} if per_channel else {nn.Linear}
            return qd(copy.deepcopy(model).eval(), spec, dtype=torch.qint8)

    methods: dict[str, Callable[[Any], Any]] = {
        TAO: torchao_int8,
        QD: quantize_dynamic,
        QD_PC: lambda model: quantize_dynamic(model, per_channel=True),
    }
    methods[INT8_METHOD] = quantize_int8
    return methods


def compiled(model: Any, example: Any) -> tuple[Any, float]:
    """``torch.compile`` with inductor freezing, compiled for ``example``'s shape; (module, s).

    Freezing is set in inductor's global config: ``torch.compile(options={"freezing":
    True})`` compiled without it here (torch 2.13), 2-3x slower on the int8 MLP.
    """
    import torch
    import torch._inductor.config

    torch._inductor.config.freezing = True
    module = torch.compile(model, dynamic=False)
    start = time.perf_counter()
    with torch.inference_mode():
        module(example)
    return module, time.perf_counter() - start


def time_block(fn: Callable[[], Any], calls: int) -> float:
    """Median seconds of ``calls`` calls of ``fn``."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    variants: dict[str, Any], example: Any, rounds: int, block_s: float
) -> dict[str, list[float]]:
    """Variant -> per-round median forward seconds (interleaved, rotating order)."""
    import torch

    names = list(variants)
    calls: dict[str, int] = {}
    with torch.inference_mode():
        for name in names:  # warm up; size each block to about block_s
            for _ in range(3):
                variants[name](example)
            one = time_block(lambda n=name: variants[n](example), 5)
            calls[name] = max(5, min(500, int(block_s / max(one, 1e-6))))
        per_round: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                per_round[name].append(time_block(lambda n=name: variants[n](example), calls[name]))
    return per_round


def train_exports(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    from raylift.models.exported import load_export
    from raylift.testing.exports import digits_spec, gpt_spec, make_export

    hidden = [int(size) for size in args.hidden.split(",") if size]
    mlp_dir = make_export(Path(tmp, "mlp"), digits_spec("bench-mlp", hidden), steps=args.mlp_steps)
    spec = gpt_spec("bench-gpt")
    spec["model"]["params"] = {"num_layers": 2, "num_heads": 4, "embed_dim": 128}
    spec["data"]["params"]["context_length"] = 64
    gpt_dir = make_export(Path(tmp, "gpt"), spec, steps=args.gpt_steps, lr=0.002)
    return {"mlp": load_export(str(mlp_dir)), "gpt": load_export(str(gpt_dir))}


def digits_val_accuracy(export: Any, model: Any) -> float:
    """Accuracy on the whole digits validation split the export was trained against."""
    import torch

    from raylift.data.base import load_dataset

    data_spec = export.manifest["spec"]["data"]
    data = load_dataset(
        data_spec["name"],
        data_spec.get("params"),
        val_fraction=data_spec["val_fraction"],
        seed=export.manifest["spec"]["train"]["seed"],
    )
    with torch.inference_mode():
        predictions = model(data.val_inputs).argmax(-1)
    return float((predictions == data.val_targets).float().mean())


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    from raylift.serving.quantize import model_size_bytes, sample_accuracy

    torch.set_num_threads(args.threads)
    methods = quantizers()
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raylift-bench-q-") as tmp:
        log("training the exports ...")
        exports = train_exports(tmp, args)
        for model_key, batches in (("mlp", [1, 64]), ("gpt", [1])):
            export = exports[model_key]
            plain = export.model
            models = {"plain": plain} | {method: methods[method](plain) for method in METHODS}
            info: dict[str, Any] = {"name": export.manifest["name"], "methods": {}}
            plain_sample = sample_accuracy(export)
            plain_val = digits_val_accuracy(export, plain) if model_key == "mlp" else None
            for method, model in models.items():
                entry: dict[str, Any] = {"size_bytes": model_size_bytes(model)}
                entry["sample_accuracy"] = sample_accuracy(export, model)
                entry["sample_drop_pts"] = (plain_sample - entry["sample_accuracy"]) * 100
                if plain_val is not None:
                    entry["val_accuracy"] = digits_val_accuracy(export, model)
                    entry["val_drop_pts"] = (plain_val - entry["val_accuracy"]) * 100
                info["methods"][method] = entry
            info["timings"] = {}
            for batch in batches:
                example = example_input(export, model_key, batch)
                variants = {f"{name}/eager": model for name, model in models.items()}
                compile_s: dict[str, float] = {}
                if not args.no_compile:
                    for name in ("plain", TAO):
                        log(f"{model_key} batch {batch}: compiling {name} ...")
                        module, seconds = compiled(models[name], example)
                        variants[f"{name}/compile"] = module
                        compile_s[f"{name}/compile"] = round(seconds, 1)
                log(f"{model_key} batch {batch}: timing {len(variants)} variants ...")
                per_round = measure(variants, example, args.rounds, args.block_s)
                info["timings"][f"bs{batch}"] = {
                    name: {
                        "median_ms": round(median(times) * 1e3, 4),
                        "rounds_ms": [round(t * 1e3, 4) for t in times],
                        "compile_s": compile_s.get(name),
                    }
                    for name, times in per_round.items()
                }
                for name, row in info["timings"][f"bs{batch}"].items():
                    log(f"  {name:45s} {row['median_ms']:9.3f} ms")
            runs[model_key] = info
    return runs, summarise(runs)


def example_input(export: Any, model_key: str, batch: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(batch)
    if model_key == "gpt":
        context = int(export.preprocessing["context_length"])
        return torch.randint(0, 256, (batch, context), generator=generator)
    return torch.randn(batch, *export.info.input_shape, generator=generator)


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    """Per method and way of running: speedups vs plain eager, size ratio, accuracy drop."""
    summary: dict[str, Any] = {
        "goals": {
            "int8_speedup_bs1": f">= {GOAL_SPEEDUP_BS1}",
            "size_ratio": f">= {GOAL_SIZE_RATIO}",
            "accuracy_drop_pts": f"<= {GOAL_MAX_DROP_PTS}",
        },
        "methods": {},
    }
    mlp, gpt = runs["mlp"], runs["gpt"]
    for method in METHODS:
        for how in ("eager", "compile"):
            key = f"{method}/{how}"
            if key not in mlp["timings"]["bs1"]:
                continue

            def speedup(model: dict[str, Any], batch: str, key: str = key) -> float | None:
                timings = model["timings"].get(batch, {})
                if key not in timings:
                    return None
                return round(timings["plain/eager"]["median_ms"] / timings[key]["median_ms"], 3)

            sizes = mlp["methods"]
            size_ratio = round(sizes["plain"]["size_bytes"] / sizes[method]["size_bytes"], 3)
            drop = round(sizes[method]["sample_drop_pts"], 3)
            bs1 = speedup(mlp, "bs1")
            summary["methods"][key] = {
                "speedup_bs1": bs1,
                "speedup_bs64": speedup(mlp, "bs64"),
                "size_ratio": size_ratio,
                "accuracy_drop_pts": drop,
                "val_accuracy_drop_pts": round(sizes[method]["val_drop_pts"], 3),
                "gpt_speedup_bs1": speedup(gpt, "bs1"),
                "gpt_size_ratio": round(
                    gpt["methods"]["plain"]["size_bytes"] / gpt["methods"][method]["size_bytes"], 3
                ),
                "gpt_token_accuracy_drop_pts": round(gpt["methods"][method]["sample_drop_pts"], 3),
                "goals_met": {
                    "int8_speedup_bs1": bs1 is not None and bs1 >= GOAL_SPEEDUP_BS1,
                    "size_ratio": size_ratio >= GOAL_SIZE_RATIO,
                    "accuracy_drop_pts": drop <= GOAL_MAX_DROP_PTS,
                },
            }
    from raylift.serving.quantize import INT8_METHOD

    summary["chosen"] = INT8_METHOD
    return summary


def render(summary: dict[str, Any], runs: dict[str, Any], config: dict[str, Any]) -> str:
    rows = []
    for key, row in summary["methods"].items():
        rows.append(
            [
                f"`{key}`",
                fmt(row["speedup_bs1"], 2),
                fmt(row["speedup_bs64"], 2),
                fmt(row["gpt_speedup_bs1"], 2),
                fmt(row["size_ratio"], 2),
                fmt(row["accuracy_drop_pts"], 2),
                fmt(row["val_accuracy_drop_pts"], 2),
            ]
        )
    table = markdown_table(
        [
            "method / run",
            "MLP speedup bs1",
            "MLP speedup bs64",
            "gpt speedup bs1",
            "MLP size ratio",
            "sample drop pts",
            "val drop pts",
        ],
        rows,
    )
    mlp = runs["mlp"]["timings"]
    caption = (
        f"MLP {config['mlp_hidden_sizes']} on digits, plain eager "
        f"{mlp['bs1']['plain/eager']['median_ms']:.3f} ms at batch 1, "
        f"{mlp['bs64']['plain/eager']['median_ms']:.3f} ms at batch 64; gpt "
        f"{runs['gpt']['timings']['bs1']['plain/eager']['median_ms']:.3f} ms per forward "
        f"(1 x {config['gpt_context']} tokens). Speedups vs the plain model in eager mode, "
        f"median of {config['rounds']} rounds, {config['torch_threads']} torch thread(s). "
        f"Goals: speedup bs1 >= {GOAL_SPEEDUP_BS1}, size ratio >= {GOAL_SIZE_RATIO}, "
        f"drop <= {GOAL_MAX_DROP_PTS} pts. Chosen: `{summary['chosen']}`."
    )
    return f"{table}\n\n{caption}\n"


def main() -> None:
    args = parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = machine_info()
    if (machine["cpu_busy_at_start"] or 0.0) > 0.1:
        log(
            f"warning: the CPUs were {machine['cpu_busy_at_start']:.0%} busy before the "
            "benchmark started; other work on the machine skews the numbers"
        )
    import torch

    start = time.perf_counter()
    runs, summary = run(args)
    config = {
        "mlp_hidden_sizes": [int(size) for size in args.hidden.split(",") if size],
        "mlp_steps": args.mlp_steps,
        "gpt": {"num_layers": 2, "num_heads": 4, "embed_dim": 128},
        "gpt_context": 64,
        "gpt_steps": args.gpt_steps,
        "rounds": args.rounds,
        "block_s": args.block_s,
        "torch_threads": torch.get_num_threads(),
        "threads_note": "torch.set_num_threads(--threads); a serving replica with 1 CPU runs "
        "1 thread (OMP_NUM_THREADS=1)",
        "quantized_engine": torch.backends.quantized.engine,
        "compile": None
        if args.no_compile
        else "torch.compile(dynamic=False), torch._inductor.config.freezing = True",
        "torchao": package_version("torchao"),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    payload = results(NAME, machine, config, runs, summary)
    publish(NAME, payload, render(summary, runs, config), write=not args.no_write)


if __name__ == "__main__":
    main()
