"""``prepare_tokens``: text, JSONL and Parquet files (local or s3:// gs://) -> token shards.

Inputs are tokenized in parallel Ray tasks (or in-process) into flat shards with
one ``<|endoftext|>`` after each document; whole documents are held out for
validation and the index is written last (see :mod:`raylift.data.token_shards`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raylift.data import token_shards as shards
from raylift.data.token_sources import TokenSource, fingerprint, iter_documents, resolve_sources
from raylift.data.tokenizer import ENDOFTEXT, load_tokenizer, tokenizer_hash
from raylift.errors import DataError

log = logging.getLogger(__name__)
_ENCODE_BATCH = 512
_IN_FLIGHT = 8


@dataclass(frozen=True)
class PrepareSummary:
    """What ``prepare_tokens`` wrote."""

    out: str
    documents: int
    tokens: int
    shards: int
    text_bytes: int
    index: dict[str, Any]

    @property
    def bytes_per_token(self) -> float:
        return self.text_bytes / max(1, self.tokens - self.documents)


def tokenize_source(
    source: TokenSource, tokenizer_json: str, eot: int, dtype: str, text_field: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """One input's documents as (tokens with a separator after each, document lengths,
    UTF-8 bytes of text). Runs in a Ray task or in-process."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    pieces: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    text_bytes = 0
    for batch in _batches(iter_documents(source, text_field)):
        text_bytes += sum(len(t.encode("utf-8")) for t in batch)
        encoded = backend.encode_batch(batch, add_special_tokens=False)
        ids = [np.asarray([*e.ids, eot], dtype=dtype) for e in encoded]
        pieces.append(np.concatenate(ids))
        lengths.append(np.asarray([len(i) for i in ids], dtype=np.int64))
    if not pieces:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64), 0
    return np.concatenate(pieces), np.concatenate(lengths), text_bytes


def _batches(documents: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for document in documents:
        batch.append(document)
        if len(batch) >= _ENCODE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_tokens(
    files: Sequence[str],
    tokenizer: str | os.PathLike[str],
    out: str,
    *,
    text_field: str = "text",
    val_fraction: float = 0.05,
    seed: int = 0,
    overwrite: bool = False,
    parallel: bool | None = None,
    shard_tokens: int = shards.DEFAULT_SHARD_TOKENS,
) -> PrepareSummary:
    """Tokenize ``files`` (paths, globs, URIs, builtin corpus names) into shards at ``out``.

    ``parallel``: one Ray task per input (None: when Ray is initialized and there is
    more than one input; False: in this process). Results are written in input
    order, whatever order the tasks finish in. Every check runs first and the
    folder is staged, then moved into place (index.json last): on a
    :class:`DataError` nothing is written.
    """
    check_val_fraction(val_fraction)
    shards.check_out(out, overwrite=overwrite)
    sources = resolve_sources(files)
    tok = load_tokenizer(tokenizer)
    eot = tok.convert_tokens_to_ids(ENDOFTEXT)
    if not isinstance(eot, int) or eot == tok.unk_token_id:
        raise DataError(f"tokenizer {str(tokenizer)!r} has no {ENDOFTEXT} token")
    vocab = len(tok)
    dtype = shards.dtype_for(vocab)
    staging = shards.staging_dir(out)
    try:
        writer = shards.ShardWriter(staging, dtype, shard_tokens)
        text_bytes = 0
        backend = tok.backend_tokenizer.to_str()
        results = _tokenized(sources, backend, eot, dtype.name, text_field, parallel)
        for source, (tokens, lengths, size) in zip(sources, results, strict=True):
            if not len(lengths):
                log.warning("input %s has no text; skipped", source)
            writer.add(tokens, lengths)
            text_bytes += size
        records = writer.finish()
        if not any(r["documents"] for r in records):
            raise DataError(f"the inputs ({', '.join(map(str, sources))}) have no text")
        index = finish_prepared(
            staging,
            records,
            tok,
            source=str(tokenizer),
            val_fraction=val_fraction,
            seed=seed,
            text_field=text_field,
            inputs=[str(s) for s in sources],
            text_bytes=text_bytes,
            input_stats=fingerprint(sources),
        )
        shards.publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PrepareSummary(
        out, index["documents"], index["tokens"], len(index["shards"]), text_bytes, index
    )


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def finish_prepared(
    folder: Path,
    records: list[dict[str, Any]],
    tokenizer: Any,
    *,
    source: str,
    val_fraction: float,
    seed: int,
    text_field: str,
    inputs: list[str],
    text_bytes: int,
    input_stats: list[list[Any]] | None = None,
) -> dict[str, Any]:
    """After the shards (``records``, from ShardWriter.finish): the split, the unigram
    counts, a copy of ``tokenizer`` and, last, index.json in ``folder``; the index."""
    vocab = len(tokenizer)
    dtype = shards.dtype_for(vocab)
    split = shards.split_spans(folder, records, val_fraction, seed)
    shards.count_unigrams(folder, records, dtype.name, vocab)
    tokenizer.save_pretrained(str(folder / shards.TOKENIZER_DIR))
    index = {
        "format_version": shards.FORMAT_VERSION,
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "tokenizer_source": source,
        "vocab_size": vocab,
        "dtype": dtype.name,
        "separator": {"token": ENDOFTEXT, "id": tokenizer.convert_tokens_to_ids(ENDOFTEXT)},
        "documents": sum(r["documents"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "text_bytes": text_bytes,
        "text_field": text_field,
        "inputs": inputs,
        "input_stats": input_stats,
        "shards": records,
        "split": split,
        "unigram": shards.UNIGRAM,
        "tokenizer_dir": shards.TOKENIZER_DIR,
    }
    shards.write_index(folder, index)
    return index


def _tokenized(
    sources: list[TokenSource],
    tokenizer_json: str,
    eot: int,
    dtype: str,
    text_field: str,
    parallel: bool | None,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Each source's tokens, in source order: Ray tasks (a bounded window in flight) or here."""
    args = (tokenizer_json, eot, dtype, text_field)
    if parallel is None:
        parallel = len(sources) > 1 and "ray" in sys.modules and _ray_ready()
    if not parallel:
        for source in sources:
            yield tokenize_source(source, *args)
        return
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(tokenize_source)
    shared = ray.put(tokenizer_json)
    pending = [task.remote(s, shared, *args[1:]) for s in sources[:_IN_FLIGHT]]
    for position in range(len(sources)):
        try:
            result = ray.get(pending[position])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, DataError):
                raise DataError(str(cause.args[0]) if cause.args else str(cause)) from None
            raise
        pending[position] = None
        if position + _IN_FLIGHT < len(sources):
            pending.append(task.remote(sources[position + _IN_FLIGHT], shared, *args[1:]))
        yield result


def _ray_ready() -> bool:
    import ray

    return bool(ray.is_initialized())
