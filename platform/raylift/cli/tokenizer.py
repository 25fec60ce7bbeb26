"""``raylift tokenizer train``: a byte-level BPE tokenizer in HuggingFace format."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from raylift.cli.common import console, handle_errors
from raylift.errors import DataError, UsageError

T = TypeVar("T")


@click.group()
def tokenizer() -> None:
    """Train tokenizers."""


@tokenizer.command("train")
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A text file, a glob ('docs/**/*.txt') or a builtin corpus (python-docs, licenses); "
    "repeatable.",
)
@click.option("--vocab-size", type=int, required=True, metavar="N", help="Vocabulary size.")
@click.option("--out", required=True, metavar="DIR", help="Folder to save the tokenizer in.")
@click.option(
    "--min-frequency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="N",
    help="Merge only pairs seen at least N times.",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@handle_errors
def train_command(
    corpus: tuple[str, ...], vocab_size: int, out: str, min_frequency: int, overwrite: bool
) -> None:
    """Train a byte-level BPE on the corpus and save it in HF format (with a chat template).

    The folder loads with transformers' AutoTokenizer.from_pretrained. Every check runs
    before training; on an error nothing is written.
    """
    from raylift.data import tokenizer as tok

    # The same checks train_tokenizer makes, first, so each error names its option.
    _as_usage(lambda: tok.check_vocab_size(vocab_size), "--vocab-size")
    _as_usage(lambda: tok.check_out_dir(out, overwrite=overwrite), "--out")
    _as_usage(lambda: tok.resolve_corpus(corpus), "--corpus")
    info = _as_usage(
        lambda: tok.train_tokenizer(
            corpus, vocab_size, out, min_frequency=min_frequency, overwrite=overwrite
        ),
        "--corpus",
    )
    special = ", ".join(f"{name}={idx}" for name, idx in info.special_tokens.items())
    measured = (
        ""
        if info.measured_bytes >= info.corpus_bytes
        else f" (first {info.measured_bytes:,} bytes)"
    )
    console.print(f"vocabulary size  {info.vocab_size:,}  (special: {special})", highlight=False)
    if info.vocab_size < vocab_size:
        console.print(
            f"note: {vocab_size:,} asked for; the corpus has no more pairs seen at least "
            f"{min_frequency} time(s) to merge",
            highlight=False,
        )
    console.print(
        f"bytes per token  {info.bytes_per_token:.2f} on {info.corpus_bytes:,} bytes of corpus"
        f"{measured}",
        highlight=False,
    )
    console.print(f"saved to         {info.path}  ({', '.join(info.files)})", highlight=False)
    console.print(f"sha256           {info.hash}", highlight=False)


def _as_usage(call: Callable[[], T], option: str) -> T:
    """``call()``, its DataError raised as a UsageError naming ``option`` (exit 2)."""
    try:
        return call()
    except DataError as exc:
        raise UsageError(str(exc), option=option) from None
