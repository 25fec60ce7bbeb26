"""``raylift eval EXPORT``: a language model's loss and perplexity on held-out tokens."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import click

from raylift.cli.common import console, handle_errors
from raylift.errors import UsageError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@click.command("eval")
@click.argument("export")
@click.option(
    "--data",
    "data_arg",
    metavar="SPEC_OR_URI",
    help="A job spec whose data section to use, or a prepared token dataset (folder or "
    "s3:// gs:// URI, as `raylift data prepare --out` wrote). Default: the export's own "
    "data, as its run split it.",
)
@click.option(
    "--split",
    type=click.Choice(["val", "train"]),
    default="val",
    show_default=True,
    help="Which split: the held-out documents (val) or the training windows.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--max-batches", type=click.IntRange(min=1), default=None, help="Stop after N batches."
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@handle_errors
def eval_command(
    export: str,
    data_arg: str | None,
    split: str,
    batch_size: int,
    max_batches: int | None,
    as_json: bool,
) -> None:
    """Loss, perplexity and token accuracy of EXPORT (a language model's export) on a
    token data set, with the data set's unigram baseline beside them."""
    from raylift.data.base import load_dataset
    from raylift.models.exported import load_export
    from raylift.training.evaluate import evaluate_split

    exported = load_export(export)
    if exported.info.task != "language_modeling":
        raise UsageError(
            f"{export} is a {exported.info.task} model; raylift eval measures language models "
            "(perplexity). Use raylift serve or the export's metrics for classifiers",
            option="EXPORT",
        )
    name, params, val_fraction, seed, tokenizer = eval_data(exported, data_arg)
    with tempfile.TemporaryDirectory(prefix="raylift-eval-") as work_dir:
        data = load_dataset(
            name,
            params,
            val_fraction=val_fraction,
            seed=seed,
            tokenizer=tokenizer,
            work_dir=work_dir,
        )
        _check_fits(exported, data, data_arg)
        figures = evaluate_split(
            exported.model, data, split, batch_size=batch_size, max_batches=max_batches
        )
    result: dict[str, Any] = {
        "export": exported.path,
        "data": name,
        "split": split,
        "loss": figures["loss"],
        "perplexity": figures["perplexity"],
        "token_accuracy": figures["token_accuracy"],
        "tokens": int(figures["counted"]),
        **({"unigram_loss": data.baselines["unigram_loss"]} if data.baselines else {}),
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    console.print(f"{data.description}", highlight=False)
    console.print(
        f"{split} loss {result['loss']:.4f}  perplexity {result['perplexity']:.2f}  "
        f"token accuracy {result['token_accuracy']:.3f}  on {result['tokens']:,} tokens",
        highlight=False,
    )
    if "unigram_loss" in result:
        console.print(
            f"unigram baseline loss {result['unigram_loss']:.4f} "
            f"(perplexity of a model that ignores the context)",
            highlight=False,
        )


def eval_data(exported: Any, data_arg: str | None) -> tuple[str, dict[str, Any], float, int, Any]:
    """(data set name, params, val_fraction, seed, tokenizer) that --data names."""
    own = exported.manifest["data"]
    if data_arg is None:
        return own["name"], own["params"], own["val_fraction"], own["seed"], own.get("tokenizer")
    if data_arg.endswith(SPEC_SUFFIXES) and os.path.isfile(data_arg):
        from raylift.specs import load_spec
        from raylift.specs.resolve import resolve

        data = resolve(load_spec(data_arg)).data
        return data.name, dict(data.params), data.val_fraction, data.seed, data.tokenizer
    context = int(exported.info.input_shape[0])
    tokenizer = exported.path if _has_tokenizer(exported.path) else None
    params = {"path": data_arg, "context_length": context}
    return "tokens", params, own["val_fraction"], own["seed"], tokenizer


def _has_tokenizer(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "tokenizer.json"))


def _check_fits(exported: Any, data: Any, data_arg: str | None) -> None:
    """The data's tokens must be the model's: same vocabulary, context within reach."""
    where = data_arg or "the export's data"
    vocab, want = data.info.vocab_size, exported.info.vocab_size
    if vocab is not None and want is not None and vocab > want:
        raise UsageError(
            f"{where} has a vocabulary of {vocab} but the model's is {want}: it was "
            "tokenized with another tokenizer",
            option="--data",
        )
    context, limit = data.info.input_shape[0], exported.info.input_shape[0]
    if context > limit:
        raise UsageError(
            f"{where} has {context}-token windows but the model was trained on {limit}; "
            "set its data.params.context_length to at most that",
            option="--data",
        )
