"""Where token datasets come from: text, JSONL and Parquet files (local or remote), globs,
builtin corpora, and the documents each holds.

A text file's documents are its paragraphs (text between blank lines); a JSONL
record's or a Parquet row's document is its text field. Whitespace-only documents
are skipped.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

from raylift import storage
from raylift.data.text import CORPORA, builtin_corpus, resolve_paths
from raylift.errors import DataError

SourceKind = Literal["text", "jsonl", "parquet", "builtin"]
_KINDS: dict[str, SourceKind] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_PARQUET_BATCH_ROWS = 4096


@dataclass(frozen=True)
class TokenSource:
    """One input: a local path, a remote URI (s3://, gs://) or a builtin corpus name."""

    uri: str
    kind: SourceKind

    def __str__(self) -> str:
        return f"builtin corpus {self.uri!r}" if self.kind == "builtin" else self.uri


def kind_of(path: str) -> SourceKind:
    """The format from the file name: .jsonl/.ndjson, .parquet, else plain text."""
    return next((k for ext, k in _KINDS.items() if path.lower().endswith(ext)), "text")


def resolve_sources(patterns: Sequence[str]) -> list[TokenSource]:
    """The inputs ``patterns`` name (paths, globs, URIs, builtin names), in order, once each.

    Raises :class:`DataError` naming the pattern when nothing matches, or a file is
    missing, not a file, unreadable or empty. Nothing is read beyond a first byte.
    """
    if not patterns:
        raise DataError("no input files given")
    sources: list[TokenSource] = []
    for pattern in patterns:
        if pattern in CORPORA and not os.path.exists(pattern):
            found = [TokenSource(pattern, "builtin")]
        elif storage.is_remote(pattern):
            found = [TokenSource(uri, kind_of(uri)) for uri in _remote_matches(pattern)]
        else:
            paths = resolve_paths([storage.local_path(pattern)])
            found = [TokenSource(str(p), kind_of(str(p))) for p in paths]
            for source in found:
                _check_local(source.uri)
        sources.extend(s for s in found if s not in sources)
    return sources


def fingerprint(sources: Sequence[TokenSource]) -> list[list[Any]]:
    """[name, size, mtime_ns] per input (None for builtin corpora): a prepared folder
    is reused only while its inputs are unchanged."""
    stats: list[list[Any]] = []
    for source in sources:
        if source.kind == "builtin":
            stats.append([str(source), None, None])
        elif storage.is_remote(source.uri):
            import pyarrow.fs as pafs

            fs, inner = pafs.FileSystem.from_uri(source.uri)
            info = fs.get_file_info(inner)
            stats.append([source.uri, info.size, info.mtime_ns])
        else:
            stat = os.stat(source.uri)
            stats.append([source.uri, stat.st_size, stat.st_mtime_ns])
    return stats


def _check_local(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            first = handle.read(1)
    except OSError as exc:
        raise DataError(f"cannot read input file {path!r}: {exc.strerror or exc}") from None
    if not first:
        raise DataError(f"input file {path!r} is empty")


def _remote_matches(pattern: str) -> list[str]:
    """The files a remote URI or glob (``s3://bucket/dir/*.jsonl``) names."""
    import pyarrow.fs as pafs

    scheme, rest = pattern.split("://", 1)
    is_glob = any(ch in rest for ch in "*?[")
    prefix = re.split(r"[*?\[]", rest, maxsplit=1)[0] if is_glob else rest
    base = prefix.rsplit("/", 1)[0] if is_glob else prefix
    try:
        fs, inner = pafs.FileSystem.from_uri(f"{scheme}://{base}")
        if not is_glob:
            info = fs.get_file_info(inner)
            if info.type != pafs.FileType.File:
                raise DataError(f"input {pattern!r} is not a file on storage")
            if info.size == 0:
                raise DataError(f"input file {pattern!r} is empty")
            return [pattern]
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises OSError / ArrowInvalid for bad URIs and access
        raise DataError(f"cannot read input {pattern!r}: {exc}") from None
    matches = sorted(
        f"{scheme}://{info.path}"
        for info in infos
        if info.type == pafs.FileType.File and info.size and fnmatch.fnmatch(info.path, rest)
    )
    if not matches:
        raise DataError(f"input pattern {pattern!r} matches no non-empty files")
    return matches


def _open_binary(uri: str) -> IO[bytes]:
    if storage.is_remote(uri):
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(uri)
        return fs.open_input_stream(inner)  # type: ignore[return-value]
    return open(storage.local_path(uri), "rb")


def iter_documents(source: TokenSource, text_field: str = "text") -> Iterator[str]:
    """The documents of ``source``, in file order; DataError names the file (and line)."""
    try:
        if source.kind == "builtin":
            yield from paragraphs(io.StringIO(builtin_corpus(source.uri).decode("utf-8")))
        elif source.kind == "parquet":
            yield from _parquet_documents(source.uri, text_field)
        else:
            with _open_binary(source.uri) as raw:
                lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")  # type: ignore[arg-type]
                if source.kind == "jsonl":
                    yield from _jsonl_documents(lines, source.uri, text_field)
                else:
                    yield from paragraphs(lines)
    except UnicodeDecodeError as exc:
        raise DataError(f"input file {source.uri!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"cannot read input file {source.uri!r}: {exc}") from None


def paragraphs(lines: Iterator[str] | IO[str]) -> Iterator[str]:
    """Text between blank lines, without the trailing newline; blank ones skipped."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block).rstrip("\r\n")
            block = []
    if block:
        yield "".join(block).rstrip("\r\n")


def _jsonl_documents(lines: IO[str], uri: str, text_field: str) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{uri}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise DataError(
                f"{uri}:{number}: the record has no text field {text_field!r} (it has: {keys}); "
                "set the text field (--text-field / data.params.text_field)"
            )
        text = record[text_field]
        if not isinstance(text, str):
            raise DataError(
                f"{uri}:{number}: field {text_field!r} is {type(text).__name__}, not a string"
            )
        if text.strip():
            yield text


def _parquet_documents(uri: str, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    with _open_binary(uri) as raw:
        try:
            table = pq.ParquetFile(raw)
        except Exception as exc:  # ArrowInvalid: not a Parquet file
            raise DataError(f"input file {uri!r} is not a Parquet file: {exc}") from None
        names = table.schema_arrow.names
        if text_field not in names:
            raise DataError(
                f"Parquet file {uri!r} has no text column {text_field!r} (it has: "
                f"{', '.join(names)}); set the text field (--text-field / data.params.text_field)"
            )
        for batch in table.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                if text is not None and not isinstance(text, str):
                    raise DataError(
                        f"Parquet file {uri!r}: column {text_field!r} holds "
                        f"{type(text).__name__}, not strings"
                    )
                if text and text.strip():
                    yield text
