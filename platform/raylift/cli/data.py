"""``raylift data prepare``: text, JSONL or Parquet files -> token shards a job streams."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from raylift.cli.common import State, address_option, console, handle_errors
from raylift.errors import DataError, UsageError

T = TypeVar("T")


@click.group()
def data() -> None:
    """Prepare data sets."""


@data.command("prepare")
@click.argument("files", nargs=-1, required=True, metavar="FILES...")
@click.option(
    "--tokenizer",
    required=True,
    metavar="PATH",
    help="A tokenizer directory (HF format) or tokenizer.json (`raylift tokenizer train`).",
)
@click.option(
    "--out", required=True, metavar="URI", help="Folder (or s3:// gs:// URI) to write the shards."
)
@click.option(
    "--text-field",
    default="text",
    show_default=True,
    metavar="NAME",
    help="The JSONL field / Parquet column holding the text.",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.05,
    show_default=True,
    metavar="F",
    help="Fraction of the documents held out for validation.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@click.option(
    "--in-process",
    is_flag=True,
    help="Tokenize here instead of in parallel Ray tasks (one per input file).",
)
@address_option
@handle_errors
def prepare_command(
    files: tuple[str, ...],
    tokenizer: str,
    out: str,
    text_field: str,
    val_fraction: float,
    seed: int,
    overwrite: bool,
    in_process: bool,
    address: str | None,
) -> None:
    """Tokenize FILES (text, .jsonl, .parquet; globs; local or s3:// gs://; or builtin
    corpora python-docs, licenses) into token shards, for `data: {name: tokens}`.

    A text file's documents are its paragraphs; a JSONL record's or Parquet row's is
    its text field. Each document ends with one <|endoftext|> token; whole documents
    are held out for validation. Every check runs first; on an error nothing is written.
    """
    from raylift.data import token_prepare as prep
    from raylift.data import token_shards, token_sources
    from raylift.data.tokenizer import load_tokenizer

    # The checks prepare_tokens makes, first, so each error names its option.
    _as_usage(lambda: prep.check_val_fraction(val_fraction), "--val-fraction")
    _as_usage(lambda: token_shards.check_out(out, overwrite=overwrite), "--out")
    sources = _as_usage(lambda: token_sources.resolve_sources(list(files)), "FILES")
    _as_usage(lambda: load_tokenizer(tokenizer), "--tokenizer")
    parallel = not in_process and len(sources) > 1
    if parallel:
        from raylift.ops.connect import connect

        connect(address, verbose=State.verbose, dashboard=False)
    summary = _as_usage(
        lambda: prep.prepare_tokens(
            list(files),
            tokenizer,
            out,
            text_field=text_field,
            val_fraction=val_fraction,
            seed=seed,
            overwrite=overwrite,
            parallel=parallel,
        ),
        "FILES",
    )
    split = summary.index["split"]
    console.print(
        f"documents        {summary.documents:,}  ({split['train']['documents']:,} train / "
        f"{split['val']['documents']:,} validation)",
        highlight=False,
    )
    console.print(
        f"tokens           {summary.tokens:,}  ({summary.index['dtype']}, "
        f"vocabulary {summary.index['vocab_size']:,})",
        highlight=False,
    )
    console.print(f"shards           {summary.shards}", highlight=False)
    console.print(f"bytes per token  {summary.bytes_per_token:.2f}", highlight=False)
    console.print(f"saved to         {summary.out}", highlight=False)


def _as_usage(call: Callable[[], T], option: str) -> T:
    """``call()``, its DataError raised as a UsageError naming ``option`` (exit 2)."""
    try:
        return call()
    except DataError as exc:
        raise UsageError(str(exc), option=option) from None
