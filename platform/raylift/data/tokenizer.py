"""Byte-level BPE tokenizers: train one on text, load one, and fingerprint it.

``train_tokenizer`` trains a byte-level BPE (HuggingFace ``tokenizers``: the
GPT-2 recipe, so any text encodes without unknown tokens) and saves it in
HuggingFace format (``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.jinja``), so ``transformers.AutoTokenizer.from_pretrained(out_dir)``
loads it outside raylift with a working ChatML chat template.
``load_tokenizer`` reads a tokenizer directory or a bare ``tokenizer.json``
(never with ``trust_remote_code``), and ``tokenizer_hash`` is the fingerprint a
token-shard index records so shards are never read with another tokenizer.

The module is named ``tokenizer`` so it never shadows the ``tokenizers`` package;
``transformers`` is imported only when a function needs it (it is slow to import).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raylift.data.text import CORPORA, builtin_corpus, resolve_paths
from raylift.errors import DataError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"
"""The document separator, also the beginning-, end- and padding token."""
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END)
"""Special tokens, in id order (0, 1, 2); the first is bos/eos/pad."""

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)
"""ChatML: ``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`` per message; a generation prompt
opens an assistant turn."""

BYTE_ALPHABET = 256
MAX_VOCAB_SIZE = 1 << 20
"""Larger vocabularies than any published model's (about 256 K) are refused as a typo."""
_CHUNK_CHARS = 1 << 16
MEASURE_CHUNKS = 128
"""Bytes per token is measured on the corpus's first 128 chunks (about 8 MB)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class CorpusSource:
    """One corpus: a builtin one (``name``) or a text file (``path``)."""

    name: str
    path: Path | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"builtin corpus {self.name!r}"


@dataclass(frozen=True)
class TokenizerInfo:
    """What ``train_tokenizer`` saved: where, how large, its fingerprint, how it compresses."""

    path: Path
    vocab_size: int
    special_tokens: dict[str, int]
    hash: str
    bytes_per_token: float
    measured_bytes: int
    corpus_bytes: int
    files: list[str] = field(default_factory=list)


def resolve_corpus(patterns: Sequence[str | os.PathLike[str]]) -> list[CorpusSource]:
    """The corpora ``patterns`` name: builtin names (see :data:`CORPORA`), paths or globs.

    A builtin name wins unless a file of that name exists in the current directory.
    Raises :class:`DataError` naming the pattern when nothing matches, a path is not a
    file, or a file is unreadable or empty.
    """
    if not patterns:
        raise DataError("no corpus given")
    sources: list[CorpusSource] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if text in CORPORA and not os.path.exists(text):
            found = [CorpusSource(text)]
        else:
            found = [CorpusSource(p.name, p) for p in resolve_paths([text])]
        for source in found:
            if source.path is not None:
                _check_readable(source.path)
            if source not in sources:
                sources.append(source)
    return sources


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except OSError as exc:
        raise DataError(f"cannot read corpus file {str(path)!r}: {exc.strerror or exc}") from None
    if not first:
        raise DataError(f"corpus file {str(path)!r} is empty")


def iter_corpus(sources: Iterable[CorpusSource], chunk_chars: int = _CHUNK_CHARS) -> Iterator[str]:
    """The corpus text in chunks of whole lines (about ``chunk_chars`` each), file by file.

    Files are streamed, so a corpus larger than memory trains. Raises
    :class:`DataError` naming the file if it is not UTF-8 text.
    """
    for source in sources:
        if source.path is None:
            text = builtin_corpus(source.name).decode("utf-8")
            for start in range(0, len(text), chunk_chars):
                yield text[start : start + chunk_chars]
            continue
        try:
            with source.path.open(encoding="utf-8", newline="") as handle:
                chunk: list[str] = []
                size = 0
                for line in handle:
                    chunk.append(line)
                    size += len(line)
                    if size >= chunk_chars:
                        yield "".join(chunk)
                        chunk, size = [], 0
                if chunk:
                    yield "".join(chunk)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"corpus file {str(source.path)!r} is not UTF-8 text (byte {exc.start})"
            ) from None
        except OSError as exc:
            raise DataError(f"cannot read corpus file {str(source.path)!r}: {exc}") from None


def check_vocab_size(
    vocab_size: int, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS
) -> None:
    """Refuse a vocabulary without room for the 256 bytes and the special tokens, or > 2^20."""
    least = BYTE_ALPHABET + len(special_tokens)
    if vocab_size < least:
        raise DataError(
            f"vocabulary size {vocab_size} is too small: a byte-level BPE needs at least "
            f"{least} (256 byte tokens + {len(special_tokens)} special tokens)"
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise DataError(f"vocabulary size {vocab_size} is larger than {MAX_VOCAB_SIZE}")


def check_out_dir(out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """``out_dir`` as a path, refused if it is a file or a non-empty folder (unless overwrite)."""
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"{str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{str(path)!r} exists and is not empty (pass --overwrite to replace it)")
    return path


def _special_tokens(special_tokens: Sequence[str], chat_template: str | None) -> list[str]:
    tokens = list(special_tokens)
    if not tokens:
        raise DataError("at least one special token (the end-of-text token) is needed")
    if len(set(tokens)) != len(tokens):
        raise DataError(f"special tokens repeat: {tokens}")
    if chat_template == DEFAULT_CHAT_TEMPLATE:
        tokens += [marker for marker in (IM_START, IM_END) if marker not in tokens]
    return tokens


def build_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on ``texts`` (in memory, nothing saved).

    The special tokens get ids 0, 1, ... in order, then the 256 byte tokens, then merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def wrap_tokenizer(
    tokenizer: Tokenizer,
    *,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
) -> PreTrainedTokenizerBase:
    """A transformers fast tokenizer over ``tokenizer``: the first special token is
    bos/eos/pad, the others are extra special tokens; ``chat_template`` is attached."""
    from transformers import PreTrainedTokenizerFast

    first, *rest = special_tokens
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=first,
        eos_token=first,
        pad_token=first,
        additional_special_tokens=rest,
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


def train_tokenizer(
    corpus_files: Sequence[str | os.PathLike[str]],
    vocab_size: int,
    out_dir: str | os.PathLike[str],
    *,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    min_frequency: int = 2,
    overwrite: bool = False,
) -> TokenizerInfo:
    """Train a byte-level BPE on ``corpus_files`` and save it in HF format to ``out_dir``.

    ``corpus_files`` are paths, globs or builtin corpus names ("python-docs",
    "licenses"). With the default ChatML template its role markers are added to
    ``special_tokens`` when missing. Every check (corpus, vocabulary size,
    ``out_dir``) runs before training, and the files are written to a temporary
    folder moved into place at the end: on any :class:`DataError` nothing is written.
    """
    tokens = _special_tokens(special_tokens, chat_template)
    check_vocab_size(vocab_size, tokens)
    if min_frequency < 1:
        raise DataError(f"min_frequency must be at least 1, not {min_frequency}")
    out = check_out_dir(out_dir, overwrite=overwrite)
    sources = resolve_corpus(corpus_files)

    counted = _Counted(iter_corpus(sources))
    tokenizer = build_tokenizer(
        counted, vocab_size, special_tokens=tokens, min_frequency=min_frequency
    )
    if not counted.any_text:
        raise DataError(f"the corpus ({', '.join(map(str, sources))}) has no text")
    wrapped = wrap_tokenizer(tokenizer, special_tokens=tokens, chat_template=chat_template)
    per_token, measured = bytes_per_token(wrapped, islice(iter_corpus(sources), MEASURE_CHUNKS))
    files = _save(wrapped, out)
    return TokenizerInfo(
        path=out,
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        special_tokens={t: int(tokenizer.token_to_id(t)) for t in tokens},
        hash=tokenizer_hash(wrapped),
        bytes_per_token=per_token,
        measured_bytes=measured,
        corpus_bytes=counted.bytes,
        files=files,
    )


class _Counted:
    """An iterator of text chunks that counts what passed through it."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self.bytes = 0
        self.any_text = False

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self.bytes += len(chunk.encode("utf-8"))
            self.any_text = self.any_text or not chunk.isspace()
            yield chunk


def _save(tokenizer: PreTrainedTokenizerBase, out: Path) -> list[str]:
    """save_pretrained into a temporary sibling of ``out``, then move it into place."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokenizer.save_pretrained(str(staging))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.name for p in out.iterdir())


def bytes_per_token(tokenizer: Any, texts: Iterable[str]) -> tuple[float, int]:
    """UTF-8 bytes per token of ``texts`` (no special tokens added) and the bytes measured.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` or a transformers fast tokenizer.
    """
    backend = _backend(tokenizer)
    total_bytes = total_tokens = 0
    for text in texts:
        total_bytes += len(text.encode("utf-8"))
        total_tokens += len(backend.encode(text, add_special_tokens=False).ids)
    return (total_bytes / total_tokens if total_tokens else 0.0), total_bytes


def _backend(tokenizer: Any) -> Tokenizer:
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, Tokenizer):
        return backend
    raise DataError(
        f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer; "
        "raylift needs a tokenizer.json"
    )


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 (hex) of the canonical ``tokenizer.json`` content of ``tokenizer``.

    Canonical: keys sorted, no whitespace, and without the runtime ``padding`` and
    ``truncation`` settings, so the hash is the same across a save and a reload and
    changes with the vocabulary, merges, special tokens or normalization.
    """
    content = json.loads(_backend(tokenizer).to_str())
    content.pop("padding", None)
    content.pop("truncation", None)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A tokenizer from a directory (HF format) or a bare ``tokenizer.json``.

    A ``tokenizer.json`` whose folder also holds ``tokenizer_config.json`` loads as that
    folder (special tokens and chat template included); a bare one gets
    ``<|endoftext|>`` as bos/eos/pad when it has that token. Remote code is never run.
    Raises :class:`DataError` naming ``path`` when it is neither, or does not load.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    target = Path(path).expanduser()
    shown = str(path)
    if not target.exists():
        raise DataError(f"tokenizer path {shown!r} does not exist")
    sibling_config = (target.parent / "tokenizer_config.json").is_file()
    if target.is_file() and target.name == "tokenizer.json" and sibling_config:
        target = target.parent
    try:
        if target.is_dir():
            if not any((target / name).is_file() for name in TOKENIZER_FILES):
                raise DataError(
                    f"tokenizer path {shown!r} is a directory without tokenizer.json or "
                    "tokenizer_config.json"
                )
            return AutoTokenizer.from_pretrained(
                str(target), trust_remote_code=False, local_files_only=True
            )
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(target))
    except DataError:
        raise
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            reason = f"its JSON lacks the key {exc}"
        if "trust_remote_code" in str(exc):
            reason = "it needs custom code (trust_remote_code), which raylift never runs"
        raise DataError(f"tokenizer path {shown!r} is not a tokenizer: {reason}") from None
    if tokenizer.convert_tokens_to_ids(ENDOFTEXT) not in (None, tokenizer.unk_token_id):
        tokenizer.bos_token = tokenizer.eos_token = tokenizer.pad_token = ENDOFTEXT
    return tokenizer
