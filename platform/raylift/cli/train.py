"""``raylift train`` and ``raylift validate``."""

from __future__ import annotations

from typing import Any

import click

from raylift.cli.common import State, address_option, console, handle_errors, set_option
from raylift.errors import SpecError
from raylift.specs import (
    JobSpec,
    check_data_files,
    check_init_from,
    check_runnable,
    check_storage,
    dump_spec,
    kind_of,
    load_spec,
)


def _load(file: str, overrides: tuple[str, ...]) -> JobSpec:
    spec = load_spec(file, list(overrides))
    check_runnable(spec, file=file)
    return spec


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@set_option
@handle_errors
def validate(files: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check spec files of any kind (train, sweep, serve) without starting anything."""
    for file in files:
        console.print(f"{file}: ok ({describe(file, list(overrides))})", highlight=False)


def describe(file: str, overrides: list[str]) -> str:
    """Validate ``file`` as its kind does before running; what it is, in a few words."""
    kind = kind_of(file, overrides)
    if kind == "sweep":
        from raylift.tuning.sweep import load_sweep

        loaded = load_sweep(file, overrides)  # the base job and the space too
        keys = ", ".join(loaded.sweep.space)
        return f"sweep {loaded.sweep.name!r} over {keys}; {loaded.objective}"
    if kind == "serve":
        from raylift.specs.serve import load_serve_spec

        spec = load_serve_spec(file, overrides)
        models = ", ".join(f"{m.name}:{m.version}" for m in spec.models)
        return f"serve application {spec.name!r}: {models}"
    job = load_spec(file, overrides)
    check_storage(job, file=file)
    check_data_files(job, file=file)
    try:
        check_init_from(job, file=file)
    except SpecError as exc:  # another run's output, not a fault of this file
        return f"job {job.name!r}; note: {exc.message}"
    return f"job {job.name!r}"


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@address_option
@set_option
@click.option(
    "--resume", is_flag=True, help="Continue the run of the same name from its latest checkpoint."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same name.")
@click.option("--dry-run", is_flag=True, help="Print the resolved spec and exit.")
@handle_errors
def train(
    file: str,
    address: str | None,
    overrides: tuple[str, ...],
    resume: bool,
    overwrite: bool,
    dry_run: bool,
) -> None:
    """Train the job in FILE on Ray (data-parallel, checkpointed, exported)."""
    spec = _load(file, overrides)
    if dry_run:
        console.print(dump_spec(spec), end="", highlight=False, markup=False)
        return
    from raylift.cli.display import TrainDisplay
    from raylift.ops.connect import connect
    from raylift.training.driver import run_training

    where = connect(address, verbose=State.verbose)
    console.print(f"{spec.name}: training on {where}; run folder {spec.run_dir}", highlight=False)
    with TrainDisplay(console, spec.name) as display:
        outcome = run_training(spec, resume=resume, overwrite=overwrite, on_event=display.update)
    _summary(outcome)


def _summary(outcome: Any) -> None:
    from raylift.cli.display import memory_line
    from raylift.models.exported import load_export
    from raylift.storage import is_remote

    best = outcome.best_metrics
    console.print(
        f"best {outcome.metric} = {best.get(outcome.metric, float('nan')):.4f} "
        f"(step {best.get('step')}, {best.get('world_size')} workers)",
        highlight=False,
    )
    for key in ("unigram_loss", "majority_class_accuracy"):
        if key in best:
            console.print(f"baseline {key} = {best[key]:.4f}", highlight=False)
    if outcome.peak_memory:
        console.print(memory_line(outcome.peak_memory), highlight=False)
    console.print(f"exported model: {outcome.export_dir}", highlight=False)
    if not is_remote(outcome.export_dir):
        exported = load_export(outcome.export_dir)
        sample = exported.sample()
        if exported.info.task == "classification":
            correct = int((exported.predict(sample["inputs"]) == sample["targets"]).sum())
            console.print(
                f"export check: {correct}/{len(sample['targets'])} held-out samples correct",
                highlight=False,
            )
        elif hasattr(exported.model, "generate"):
            console.print(
                f"sample: {_generate(exported, sample['inputs'][0][:24])!r}", highlight=False
            )


def _generate(exported: Any, prompt: str, new_bytes: int = 60) -> str:
    """Greedy continuation of ``prompt`` by a byte-level language model."""
    import torch

    from raylift.data.preprocessing import decode_bytes, encode_text

    ids = torch.tensor([encode_text(prompt)])
    out = exported.model.generate(ids, new_bytes, temperature=0.0)
    return decode_bytes(out[0].tolist())
