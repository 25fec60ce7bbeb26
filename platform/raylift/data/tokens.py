"""``tokens``: language modelling on prepared token shards, read window by window.

``path`` names a folder (or s3:// gs:// URI) that ``raylift data prepare`` wrote;
``files`` names plain inputs to prepare into the run's folder first. Training and
validation windows are ``context_length + 1`` tokens at stride ``context_length``
inside each split's held-out-by-document token stream; workers memory-map the
shards (remote ones are fetched once per node) and read only the windows their
sample-stream positions name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from raylift import storage
from raylift.data import token_shards as shards
from raylift.data.base import DATASETS, DatasetInfo, PreparedData
from raylift.data.token_prepare import PrepareSummary, prepare_tokens
from raylift.data.token_sources import fingerprint, resolve_sources
from raylift.data.token_windows import SplitWindows, TokenWindows
from raylift.data.tokenizer import load_tokenizer, tokenizer_hash
from raylift.errors import DataError, SpecError
from raylift.registry import Params

__all__ = ["PrepareSummary", "TokensParams", "prepare_tokens", "tokens"]

log = logging.getLogger(__name__)
PREPARED_ROOT = ".tokens"
"""``files`` are prepared into ``<storage.path>/.tokens/<run name>``, beside the run folder:
the driver loads the data before it checks (or, with --overwrite, removes) the run
folder, so the tokens cannot live inside it."""


class TokensParams(Params):
    path: str | None = Field(
        None,
        description=(
            "A folder or s3:// gs:// URI prepared by `raylift data prepare` (its index.json "
            "records the tokenizer, shards and split)."
        ),
    )
    files: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Instead of path: text, JSONL or Parquet files, globs or builtin corpora "
            "(python-docs, licenses) to prepare into the run folder first, with "
            "data.tokenizer, data.val_fraction and data.seed."
        ),
    )
    context_length: int = Field(128, ge=1, description="Tokens of context per example.")
    sample_size: int = Field(
        8, ge=1, description="How many decoded validation windows to keep with the export."
    )
    text_field: str = Field(
        "text", min_length=1, description="The JSONL field / Parquet column holding the text."
    )

    @model_validator(mode="after")
    def _one_source(self) -> TokensParams:
        if (self.path is None) == (self.files is None):
            raise ValueError("give exactly one of path (prepared tokens) or files (to prepare)")
        return self

    def check_files(self) -> None:
        if self.files:
            resolve_sources(self.files)
        elif self.path is not None and not storage.is_remote(self.path):
            shards.read_index(_absolute(self.path))

    def with_absolute_paths(self) -> TokensParams:
        update: dict[str, Any] = {}
        if self.path is not None:
            update["path"] = _absolute(self.path)
        if self.files:
            update["files"] = [_absolute_input(f) for f in self.files]
        return self.model_copy(update=update)


def _absolute(path: str) -> str:
    if storage.is_remote(path):
        return path
    return os.path.abspath(os.path.expanduser(storage.local_path(path)))


def _absolute_input(pattern: str) -> str:
    from raylift.data.text import CORPORA

    if pattern in CORPORA and not os.path.exists(pattern):
        return pattern
    return _absolute(pattern)


@DATASETS.register(
    "tokens", TokensParams, "language modelling on prepared token shards, read window by window"
)
def tokens(
    params: TokensParams,
    *,
    val_fraction: float,
    seed: int,
    tokenizer: str | None = None,
    work_dir: str | None = None,
) -> PreparedData:
    """Lazy train/validation windows over prepared shards (prepared first from ``files``)."""
    path = params.path or _prepare_files(params, tokenizer, work_dir, val_fraction, seed)
    try:
        index = shards.read_index(path)
    except DataError as exc:
        raise SpecError(str(exc), key="data.params.path") from None
    tokenizer_dir = _tokenizer_dir(path, index, tokenizer)
    context = params.context_length
    splits = {s: SplitWindows(path, index, s, context) for s in ("train", "val")}
    for name, windows in splits.items():
        if windows.num_windows < 1:
            held = index["split"][name]["tokens"]
            raise SpecError(
                f"the {name} split of {path} has {held} tokens, too few for one window of "
                f"context_length={context} (+1)",
                key="data.params.context_length",
            )
    train, val = splits["train"], splits["val"]
    val_inputs, val_targets = TokenWindows(val, "inputs"), TokenWindows(val, "targets")
    sample = min(params.sample_size, val.num_windows)
    decode = load_tokenizer(tokenizer_dir)
    sample_inputs = val_inputs[:sample]
    vocab = int(index["vocab_size"])
    return PreparedData(
        train_inputs=TokenWindows(train, "inputs"),  # type: ignore[arg-type]
        train_targets=TokenWindows(train, "targets"),  # type: ignore[arg-type]
        val_inputs=val_inputs,  # type: ignore[arg-type]
        val_targets=val_targets,  # type: ignore[arg-type]
        info=DatasetInfo(
            task="language_modeling", input_shape=(context,), vocab_size=vocab, input_dtype="int64"
        ),
        preprocessing={
            "type": "tokenizer",
            "context_length": context,
            "tokenizer_hash": index["tokenizer_hash"],
            "vocab_size": vocab,
        },
        sample_raw_inputs=[decode.decode(row.tolist()) for row in sample_inputs],
        sample_targets=val_targets[:sample],
        baselines={"unigram_loss": _unigram_loss(path, index)},
        description=(
            f"tokens: {path}, {index['tokens']:,} tokens in {len(index['shards'])} shard(s), "
            f"{index['documents']:,} documents; {train.num_windows:,} train / "
            f"{val.num_windows:,} validation windows of {context} (held-out documents)"
        ),
        tokenizer_path=str(tokenizer_dir),
    )


def _tokenizer_dir(path: str, index: dict[str, Any], tokenizer: str | None) -> Path:
    """The spec's tokenizer when it matches the shards' hash (else a SpecError naming
    both); without one, the shards' own copy (fetched to the node cache when remote)."""
    if tokenizer is None:
        if storage.is_remote(path):
            return shards.local_folder(path, index) / shards.TOKENIZER_DIR
        return Path(path) / index.get("tokenizer_dir", shards.TOKENIZER_DIR)
    try:
        spec_hash = tokenizer_hash(load_tokenizer(tokenizer))
    except DataError as exc:
        raise SpecError(str(exc), key="data.tokenizer") from None
    if spec_hash != index["tokenizer_hash"]:
        raise SpecError(
            f"the token shards at {path} were prepared with another tokenizer "
            f"({index.get('tokenizer_source', '?')}, sha256 {index['tokenizer_hash'][:12]}) "
            f"than data.tokenizer {tokenizer} (sha256 {spec_hash[:12]}); prepare them again "
            "with this tokenizer or name theirs",
            key="data.tokenizer",
        )
    return Path(tokenizer)


def _unigram_loss(path: str, index: dict[str, Any]) -> float:
    folder = shards.local_folder(path, index)  # path itself when local
    return shards.unigram_loss_from_counts(np.load(folder / index["unigram"]))


def _prepare_files(
    params: TokensParams,
    tokenizer: str | None,
    work_dir: str | None,
    val_fraction: float,
    seed: int,
) -> str:
    """Prepare ``files`` beside the run folder ``work_dir`` (see :data:`PREPARED_ROOT`),
    kept when already prepared from the same inputs, tokenizer and split (as on a
    resumed run); its path."""
    if tokenizer is None:
        raise SpecError(
            "data.params.files needs a tokenizer to prepare them with: set data.tokenizer "
            "(or use an hf model whose folder has one)",
            key="data.tokenizer",
        )
    if work_dir is None:
        raise SpecError("data.params.files needs a run folder to prepare into", key="data.params")
    assert params.files is not None
    out = prepared_dir(work_dir)
    try:
        sources = resolve_sources(params.files)
        stats = fingerprint(sources)
        wanted = tokenizer_hash(load_tokenizer(tokenizer))
    except DataError as exc:
        raise SpecError(str(exc), key="data.params.files") from None
    if _already_prepared(out, stats, wanted, val_fraction, seed, params.text_field):
        log.info("using the tokens already prepared in %s", out)
        return out
    message = f"preparing {len(sources)} input(s) into token shards at {out}"
    log.info(message)
    print(f"raylift: {message}", flush=True)
    try:
        prepare_tokens(
            params.files,
            tokenizer,
            out,
            text_field=params.text_field,
            val_fraction=val_fraction,
            seed=seed,
            overwrite=True,
        )
    except DataError as exc:
        raise SpecError(str(exc), key="data.params.files") from None
    return out


def prepared_dir(run_dir: str) -> str:
    """Where a run's ``files`` are prepared: ``<storage root>/.tokens/<run name>``."""
    stripped = run_dir.rstrip("/")
    if storage.is_remote(stripped):
        root, name = stripped.rsplit("/", 1)
    else:
        root, name = os.path.split(stripped)
    return storage.join(root, PREPARED_ROOT, name)


def _already_prepared(
    out: str, stats: list[list[Any]], tokenizer: str, val_fraction: float, seed: int, field: str
) -> bool:
    try:
        index = shards.read_index(out)
    except DataError:
        return False
    split = index["split"]
    return (
        index.get("input_stats") == stats
        and index.get("tokenizer_hash") == tokenizer
        and index.get("text_field") == field
        and split.get("val_fraction") == val_fraction
        and split.get("seed") == seed
    )
