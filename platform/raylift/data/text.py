"""``text``: byte-level language modelling (vocabulary 256) on a builtin corpus or files.

Because the vocabulary is the 256 byte values, a model pretrained on one text
fine-tunes on any other without a tokenizer.
"""

from __future__ import annotations

import glob
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from raylift.data.base import DATASETS, DatasetInfo, PreparedData, split_indices
from raylift.data.preprocessing import unigram_loss
from raylift.errors import DataError
from raylift.registry import Params

VOCAB_SIZE = 256
CORPORA = ("python-docs", "licenses")


class TextParams(Params):
    corpus: Literal["python-docs", "licenses"] = Field(
        "python-docs",
        description=(
            "Builtin corpus: 'python-docs' (Python's documentation topics from the standard "
            "library) or 'licenses' (Apache-2.0, GPL-3, LGPL-3 and MPL-2.0 license texts)."
        ),
    )
    paths: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Text files or globs to train on instead of the builtin corpus; relative paths "
            "resolve against the current directory. Files are joined in the order given."
        ),
    )
    context_length: int = Field(64, ge=1, description="Bytes of context per example.")
    max_bytes: int | None = Field(
        None, ge=2, description="Use only the first max_bytes bytes of the corpus."
    )
    sample_size: int = Field(
        16,
        ge=1,
        description="How many validation texts to keep with the export as a sample.",
    )

    def check_files(self) -> None:
        if self.paths:
            resolve_paths(self.paths)

    def with_absolute_paths(self) -> TextParams:
        if not self.paths:
            return self
        absolute = [os.path.abspath(os.path.expanduser(p)) for p in self.paths]
        return self.model_copy(update={"paths": absolute})


def builtin_corpus(name: str) -> bytes:
    """The bytes of a builtin corpus (see :data:`CORPORA`)."""
    if name == "python-docs":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    if name == "licenses":
        return resources.files("raylift.data").joinpath("corpora/licenses.txt").read_bytes()
    raise DataError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")


def resolve_paths(patterns: list[str]) -> list[Path]:
    """Files named by ``patterns`` (paths or globs), in order, without duplicates."""
    files: list[Path] = []
    for pattern in patterns:
        full = os.path.join(os.getcwd(), os.path.expanduser(pattern))
        if any(ch in pattern for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(full, recursive=True))]
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise DataError(f"text path pattern {pattern!r} matches no files")
        else:
            path = Path(full)
            if not path.exists():
                raise DataError(f"text file {pattern!r} does not exist ({path})")
            if not path.is_file():
                raise DataError(f"text path {pattern!r} is not a file; use a glob like 'dir/*.txt'")
            matches = [path]
        files.extend(m for m in matches if m not in files)
    return files


def read_corpus(params: TextParams) -> tuple[bytes, str]:
    """The corpus bytes (capped at ``max_bytes``) and a short description of the source."""
    if params.paths:
        files = resolve_paths(params.paths)
        try:
            data = b"\n\n".join(f.read_bytes() for f in files)
        except OSError as exc:
            raise DataError(f"cannot read text file: {exc}") from None
        source = f"{len(files)} file(s)" if len(files) > 1 else str(files[0])
    else:
        data = builtin_corpus(params.corpus)
        source = f"builtin corpus {params.corpus!r}"
    if params.max_bytes is not None:
        data = data[: params.max_bytes]
    return data, source


@DATASETS.register(
    "text", TextParams, "byte-level language modelling on a builtin corpus or your text files"
)
def text(params: TextParams, *, val_fraction: float, seed: int) -> PreparedData:
    """Non-overlapping chunks of context_length+1 bytes, split by chunk."""
    data, source = read_corpus(params)
    context = params.context_length
    num_chunks = len(data) // (context + 1)
    if num_chunks < 2:
        raise DataError(
            f"{source} has {len(data)} bytes; context_length={context} needs at least "
            f"{2 * (context + 1)} (one training and one validation example)"
        )
    flat = torch.frombuffer(bytearray(data[: num_chunks * (context + 1)]), dtype=torch.uint8)
    chunks = flat.view(num_chunks, context + 1).to(torch.int64)
    inputs, targets = chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()
    train_idx, val_idx = split_indices(num_chunks, val_fraction, seed)
    sample = _sample(inputs[val_idx], params.sample_size)
    return PreparedData(
        train_inputs=inputs[train_idx],
        train_targets=targets[train_idx],
        val_inputs=inputs[val_idx],
        val_targets=targets[val_idx],
        info=DatasetInfo(
            task="language_modeling",
            input_shape=(context,),
            vocab_size=VOCAB_SIZE,
            input_dtype="int64",
        ),
        preprocessing={
            "type": "bytes",
            "vocab_size": VOCAB_SIZE,
            "context_length": context,
            "encoding": "utf-8",
        },
        sample_raw_inputs=[s for s, _ in sample],
        sample_targets=targets[val_idx][[i for _, i in sample]].clone(),
        baselines={"unigram_loss": unigram_loss(targets[train_idx], targets[val_idx], VOCAB_SIZE)},
        description=(
            f"text: {source}, {len(data)} bytes in {num_chunks} chunks of {context + 1} bytes; "
            f"{len(train_idx)} train / {len(val_idx)} validation"
        ),
    )


def _sample(val_inputs: torch.Tensor, size: int) -> list[tuple[str, int]]:
    """Up to ``size`` (text, row) pairs of validation inputs, preferring rows that are
    valid UTF-8 (so encoding the text gives back exactly the model input)."""
    clean: list[tuple[str, int]] = []
    broken: list[tuple[str, int]] = []
    for row in range(len(val_inputs)):
        raw = bytes(val_inputs[row].tolist())
        try:
            clean.append((raw.decode("utf-8"), row))
        except UnicodeDecodeError:
            if len(broken) < size:
                broken.append((raw.decode("utf-8", errors="replace"), row))
        if len(clean) >= size:
            break
    return (clean + broken)[:size]
