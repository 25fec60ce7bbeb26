"""The on-storage format of prepared tokens: flat shards, document offsets, the split, the index.

A prepared folder holds::

    index.json                 written last: a folder without it is not prepared
    shard_00000.bin            flat token ids (uint16 or uint32), each document
                               followed by one <|endoftext|> separator
    shard_00000.offsets.npy    int64 document starts in the shard, plus its length
    train_spans.npy            int64 (4, K): shard, start, stop, start in the split's
    val_spans.npy              token stream; runs of whole documents, in order
    unigram.npy                int64 (2, V): token counts of the train and val split
    tokenizer/                 the tokenizer the tokens were made with (HF format)

``index.json`` records the format version, the tokenizer's hash and vocabulary
size, the dtype, per-shard token and document counts and the split.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raylift import storage
from raylift.data.base import split_indices
from raylift.errors import DataError

FORMAT_VERSION = 1
INDEX = "index.json"
TOKENIZER_DIR = "tokenizer"
UNIGRAM = "unigram.npy"
SPANS = {"train": "train_spans.npy", "val": "val_spans.npy"}
DEFAULT_SHARD_TOKENS = 1 << 27
"""128 M tokens (256 MB of uint16) per shard at most; a document never spans two."""
CACHE_ENV = "RAYLIFT_TOKEN_CACHE"
_COUNT_CHUNK = 1 << 24


def dtype_for(vocab_size: int) -> np.dtype[Any]:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass
class ShardWriter:
    """Appends tokenized documents to flat shard files in ``folder``."""

    folder: Path
    dtype: np.dtype[Any]
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    shards: list[dict[str, Any]] = field(default_factory=list)
    _offsets: list[int] = field(default_factory=list)

    def add(self, tokens: np.ndarray, doc_lengths: np.ndarray) -> None:
        """Append documents: ``tokens`` is their concatenation (separators included)."""
        if int(doc_lengths.sum()) != len(tokens):
            raise ValueError("document lengths do not add up to the tokens given")
        start = 0
        ends = np.cumsum(doc_lengths)
        while start < len(tokens):
            if not self.shards:
                self._open_shard()
            room = self.shard_tokens - self._current_tokens()
            # Whole documents that fit; at least one so a huge document still goes in.
            last = int(np.searchsorted(ends, start + room, side="right"))
            done = int(np.searchsorted(ends, start, side="right"))
            if last <= done:  # the next document does not fit
                if self._current_tokens():
                    self._open_shard()
                    continue
                last = done + 1  # alone in a shard: a document is never split
            stop = int(ends[last - 1])
            piece = tokens[start:stop].astype(self.dtype, copy=False)
            with open(self.folder / self.shards[-1]["file"], "ab") as handle:
                handle.write(piece.tobytes())
            base = self._current_tokens()
            starts = np.concatenate([[start], ends[done : last - 1]]) - start + base
            self._offsets.extend(starts.tolist())
            self.shards[-1]["tokens"] += stop - start
            self.shards[-1]["documents"] += last - done
            start = stop

    def _current_tokens(self) -> int:
        return int(self.shards[-1]["tokens"])

    def _open_shard(self) -> None:
        self._close_shard()
        name = f"shard_{len(self.shards):05d}"
        self.shards.append(
            {"file": f"{name}.bin", "offsets": f"{name}.offsets.npy", "tokens": 0, "documents": 0}
        )
        (self.folder / self.shards[-1]["file"]).write_bytes(b"")
        self._offsets = []

    def _close_shard(self) -> None:
        if self.shards:
            offsets = np.asarray([*self._offsets, self._current_tokens()], dtype=np.int64)
            np.save(self.folder / self.shards[-1]["offsets"], offsets)

    def finish(self) -> list[dict[str, Any]]:
        """Write the last shard's offsets; the shard records for the index."""
        self._close_shard()
        return self.shards


def split_spans(
    folder: Path, shards: list[dict[str, Any]], val_fraction: float, seed: int
) -> dict[str, Any]:
    """Hold out whole documents (seeded), save each split's spans; the index's split record."""
    offsets = [np.load(folder / s["offsets"]) for s in shards]
    num_docs = sum(len(o) - 1 for o in offsets)
    _, val_docs = split_indices(num_docs, val_fraction, seed)
    is_val = np.zeros(num_docs, dtype=bool)
    is_val[val_docs.numpy()] = True
    record: dict[str, Any] = {"val_fraction": val_fraction, "seed": seed}
    for split, wanted in (("train", False), ("val", True)):
        runs: list[np.ndarray] = []
        first = 0
        for shard, starts in enumerate(offsets):
            mask = is_val[first : first + len(starts) - 1] == wanted
            first += len(starts) - 1
            edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
            begin, end = edges[0::2], edges[1::2]  # document runs [begin, end)
            runs.append(np.stack([np.full(len(begin), shard), starts[begin], starts[end]]))
        spans = np.concatenate(runs, axis=1).astype(np.int64)
        lengths = spans[2] - spans[1]
        cumulative = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        np.save(folder / SPANS[split], np.concatenate([spans, cumulative[None]]))
        record[split] = {
            "documents": int((is_val == wanted).sum()),
            "tokens": int(lengths.sum()),
            "spans": SPANS[split],
        }
    return record


def count_unigrams(folder: Path, shards: list[dict[str, Any]], dtype: str, vocab: int) -> None:
    """Token counts of each split (from its spans), saved as unigram.npy (2, vocab)."""
    counts = np.zeros((2, vocab), dtype=np.int64)
    maps = [np.memmap(folder / s["file"], dtype=dtype, mode="r") for s in shards if s["tokens"]]
    for row, split in enumerate(("train", "val")):
        spans = np.load(folder / SPANS[split])
        for shard, start, stop, _ in spans.T:
            for chunk in range(int(start), int(stop), _COUNT_CHUNK):
                piece = maps[int(shard)][chunk : min(int(stop), chunk + _COUNT_CHUNK)]
                counts[row] += np.bincount(piece, minlength=vocab)[:vocab]
    np.save(folder / UNIGRAM, counts)


def unigram_loss_from_counts(counts: np.ndarray) -> float:
    """raylift.data.preprocessing.unigram_loss from counts: val tokens under the add-one
    smoothed train distribution (nats)."""
    train, val = counts[0].astype(np.float64) + 1.0, counts[1].astype(np.float64)
    log_p = np.log(train) - np.log(train.sum())
    return float(-(val * log_p).sum() / max(val.sum(), 1.0))


def write_index(folder: Path, index: dict[str, Any]) -> None:
    with open(folder / INDEX, "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1)


def check_out(out: str, *, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder, unless ``overwrite``."""
    if storage.is_remote(out):
        if storage.read_text(storage.join(out, INDEX)) is not None and not overwrite:
            raise DataError(f"{out!r} already holds prepared tokens (pass --overwrite)")
        return
    path = Path(storage.local_path(out)).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"{str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{str(path)!r} exists and is not empty (pass --overwrite to replace it)")


def staging_dir(out: str) -> Path:
    """A fresh folder to write into: a hidden sibling of a local ``out``, else a temp dir."""
    if storage.is_remote(out):
        return Path(tempfile.mkdtemp(prefix="raylift-tokens-"))
    target = Path(storage.local_path(out)).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))


def publish(staging: Path, out: str) -> None:
    """Move ``staging`` into place as ``out``: a rename locally; remotely the files
    first, then index.json, so a half-copied folder has no index."""
    if not storage.is_remote(out):
        target = Path(storage.local_path(out)).expanduser().absolute()
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return
    index = (staging / INDEX).read_text(encoding="utf-8")
    (staging / INDEX).unlink()
    try:
        storage.upload_dir(str(staging), out)
        storage.write_text(storage.join(out, INDEX), index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_index(path: str) -> dict[str, Any]:
    """The index of a prepared folder; DataError when there is none or it is malformed."""
    try:
        text = storage.read_text(storage.join(path, INDEX))
    except OSError as exc:
        raise DataError(f"cannot read prepared tokens at {path!r}: {exc}") from None
    if text is None:
        raise DataError(
            f"{path!r} holds no prepared tokens (no {INDEX}); prepare them with "
            "`raylift data prepare --tokenizer T --out DIR FILES...`"
        )
    try:
        index = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{storage.join(path, INDEX)!r} is not JSON: {exc}") from None
    version = index.get("format_version") if isinstance(index, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(
            f"{storage.join(path, INDEX)!r} has format version {version!r}; "
            f"this raylift reads version {FORMAT_VERSION} (prepare the tokens again)"
        )
    return index


def cache_root() -> Path:
    """Where remote shards are cached on each node: $RAYLIFT_TOKEN_CACHE, else
    $RAYLIFT_HOME/cache/tokens (~/.raylift by default)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    home = Path(os.environ.get("RAYLIFT_HOME", "~/.raylift")).expanduser()
    return home / "cache" / "tokens"


def local_folder(path: str, index: dict[str, Any]) -> Path:
    """A local folder with the prepared files: ``path`` itself when local; for a remote
    ``path`` a per-node cache, downloaded once under a file lock (others wait for it)."""
    if not storage.is_remote(path):
        return Path(storage.local_path(path)).expanduser().absolute()
    key = hashlib.sha256(
        (path.rstrip("/") + "\n" + json.dumps(index, sort_keys=True)).encode()
    ).hexdigest()[:24]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / INDEX).is_file():
            return target
        partial = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            storage.download_dir(path, str(partial))
            write_index(partial, index)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        except OSError as exc:
            raise DataError(f"cannot fetch prepared tokens from {path!r}: {exc}") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target
