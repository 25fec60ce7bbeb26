"""``chat``: supervised fine-tuning on conversations, the loss on the assistant's tokens only.

Records are JSONL lines ``{"messages": [{"role": "system"|"user"|"assistant",
"content": str}, ...]}`` (your files, or the builtin ``python-docs-qa`` corpus).
The tokenizer's chat template renders each conversation. The assistant's tokens
are found by rendering prefixes: for each assistant message, the template's
rendering of the messages before it with the generation prompt ends where the
message starts, and its rendering up to that message (trailing whitespace left
out) ends where it stops, so the trained span is the message's content and the
template's closing token (``<|im_end|>`` in ChatML). The text is tokenized span
by span, so a prompt's tokens are those the model sees at generation time.
A template that does not render a conversation's prefixes as prefixes of it
(one that rewrites earlier turns) is refused.

Conversations are packed whole into rows of ``context_length`` (best fit, longest
first) with position ids restarting at 0 at each one, so the model does not attend
across conversations; or, with ``packing: false``, padded one to a row.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator

from raylift.data.base import DATASETS, IGNORE_INDEX, DatasetInfo, PreparedData, split_indices
from raylift.data.preprocessing import unigram_loss
from raylift.data.text import resolve_paths
from raylift.errors import DataError, SpecError
from raylift.registry import Params

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
CHAT_CORPORA = ("python-docs-qa",)
PATHS_KEY = "data.params.paths"


class ChatParams(Params):
    corpus: Literal["python-docs-qa"] = Field(
        "python-docs-qa",
        description=(
            "Builtin chat corpus: 'python-docs-qa' (question/answer conversations generated "
            "from Python's documentation topics; see its PROVENANCE.md)."
        ),
    )
    paths: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            'JSONL files or globs of conversations, one {"messages": [{"role": '
            '"system"|"user"|"assistant", "content": "..."}, ...]} a line, instead of the '
            "builtin corpus; relative paths resolve against the current directory."
        ),
    )
    context_length: int = Field(512, ge=2, description="Tokens per training row.")
    packing: bool = Field(
        True,
        description=(
            "Pack whole conversations into each row (position ids restart at each one, so "
            "none attends to another); false: one conversation a row, padded."
        ),
    )
    overlong: Literal["truncate", "drop"] | None = Field(
        None,
        description=(
            "A conversation longer than context_length + 1 tokens: 'truncate' keeps its "
            "first tokens, 'drop' leaves it out (both counted in the data description); "
            "unset: an error."
        ),
    )
    sample_size: int = Field(
        4, ge=1, description="How many validation conversations to keep with the export."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ChatParams:
        if self.paths and "corpus" in self.model_fields_set:
            raise ValueError("give either paths or corpus, not both")
        return self

    def check_files(self) -> None:
        if self.paths:
            chat_files(self.paths)

    def check_tokenizer(self, tokenizer: str | None) -> None:
        if tokenizer is None:
            raise no_tokenizer()
        if "://" not in tokenizer and not os.path.exists(tokenizer):
            raise SpecError(f"tokenizer path {tokenizer!r} does not exist", key="data.tokenizer")

    def with_absolute_paths(self) -> ChatParams:
        if not self.paths:
            return self
        absolute = [os.path.abspath(os.path.expanduser(p)) for p in self.paths]
        return self.model_copy(update={"paths": absolute})


@dataclass(frozen=True)
class Conversation:
    """One record: its messages and where it was read (``file:line``)."""

    messages: list[dict[str, str]]
    where: str


@dataclass(frozen=True)
class Encoded:
    """One conversation as model rows: ``targets[i]`` is the token after ``inputs[i]``,
    or IGNORE_INDEX where that token is not the assistant's."""

    inputs: list[int]
    targets: list[int]
    truncated: bool = False

    @property
    def trained(self) -> int:
        return sum(t != IGNORE_INDEX for t in self.targets)


def chat_files(patterns: list[str]) -> list[Path]:
    """The files ``patterns`` name, each readable and non-empty (DataError otherwise)."""
    try:
        files = resolve_paths(patterns)
    except DataError as exc:
        raise DataError(f"{PATHS_KEY}: {exc}") from None
    for path in files:
        try:
            with path.open("rb") as handle:
                empty = not handle.read(1)
        except OSError as exc:
            raise DataError(f"{path}: {PATHS_KEY}: cannot read: {exc.strerror or exc}") from None
        if empty:
            raise DataError(f"{path}: {PATHS_KEY}: the file is empty")
    return files


def builtin_chat_corpus(name: str) -> str:
    """The JSONL text of a builtin chat corpus (see :data:`CHAT_CORPORA`)."""
    if name not in CHAT_CORPORA:
        raise DataError(f"unknown chat corpus {name!r} (known: {', '.join(CHAT_CORPORA)})")
    source = resources.files("raylift.data").joinpath(f"corpora/chat/{name}.jsonl")
    return source.read_text(encoding="utf-8")


def read_conversations(params: ChatParams) -> tuple[list[Conversation], str]:
    """Every record of the files (or the builtin corpus), checked; and a source description."""
    if not params.paths:
        text = builtin_chat_corpus(params.corpus)
        return list(parse_lines(text.split("\n"), f"builtin chat corpus {params.corpus}")), (
            f"builtin corpus {params.corpus!r}"
        )
    conversations: list[Conversation] = []
    files = chat_files(params.paths)
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: {PATHS_KEY}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise DataError(f"{path}: {PATHS_KEY}: cannot read: {exc.strerror or exc}") from None
        found = list(parse_lines(lines, str(path)))
        if not found:
            raise DataError(f"{path}: {PATHS_KEY}: the file has no conversations")
        conversations.extend(found)
    source = f"{len(files)} file(s)" if len(files) > 1 else str(files[0])
    return conversations, source


def parse_lines(lines: Sequence[str], name: str) -> Iterator[Conversation]:
    """The conversations of JSONL ``lines`` (blank lines skipped) of the file ``name``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(where, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        yield Conversation(check_record(record, where), where)


def check_record(record: Any, where: str) -> list[dict[str, str]]:
    """The messages of one record; DataError naming ``where`` if it is malformed."""
    if not isinstance(record, dict) or "messages" not in record:
        raise _bad(where, 'the record has no "messages" (expected {"messages": [...]})')
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad(where, '"messages" must be a non-empty list of {"role", "content"} objects')
    checked: list[dict[str, str]] = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise _bad(where, f'message {n} needs a "role" and a "content"')
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise _bad(
                where, f"message {n} has an unknown role {role!r} (known: {', '.join(ROLES)})"
            )
        if not isinstance(content, str):
            raise _bad(
                where, f'message {n}: "content" must be a string, not {type(content).__name__}'
            )
        checked.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in checked):
        raise _bad(where, "the conversation has no assistant message (nothing to train on)")
    return checked


def _bad(where: str, problem: str) -> DataError:
    return DataError(f"{where}: {PATHS_KEY}: {problem}")


def no_tokenizer() -> SpecError:
    return SpecError(
        "data set 'chat' needs a tokenizer with a chat template: set data.tokenizer to a "
        "tokenizer directory or tokenizer.json (e.g. one `raylift tokenizer train` wrote), "
        "or use an hf model (or init_from export) whose directory has one",
        key="data.tokenizer",
    )


def chat_tokenizer(path: str | None) -> PreTrainedTokenizerBase:
    """The job's tokenizer, which must have a chat template (SpecError at data.tokenizer)."""
    from raylift.data.tokenizer import load_tokenizer

    if path is None:
        raise no_tokenizer()
    try:
        tokenizer = load_tokenizer(path)
    except DataError as exc:
        raise SpecError(str(exc), key="data.tokenizer") from None
    if not getattr(tokenizer, "chat_template", None):
        raise SpecError(
            f"tokenizer {path!r} has no chat template; use one that has "
            "(`raylift tokenizer train` saves ChatML)",
            key="data.tokenizer",
        )
    return tokenizer


def render_all(
    tokenizer: PreTrainedTokenizerBase, conversations: list[list[dict[str, str]]], **kw: Any
) -> list[str]:
    """The chat template's text of each conversation, in one batched call."""
    if not conversations:
        return []
    return tokenizer.apply_chat_template(conversations, tokenize=False, **kw)  # type: ignore[return-value]


def segments(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation]
) -> list[list[tuple[str, bool]]]:
    """Each rendered conversation as (text, trained) pieces; trained: the assistant's.

    For the assistant message k, the messages before it rendered with the
    generation prompt end where it starts; the messages up to it end (trailing
    whitespace left out) where it stops.
    """
    plain: list[list[dict[str, str]]] = []  # each conversation, then its prefixes
    prompts: list[list[dict[str, str]]] = []
    turns: list[list[tuple[int, int]]] = []  # per conversation: (prompt, prefix) indices
    for conversation in conversations:
        messages = conversation.messages
        plain.append(messages)
        own: list[tuple[int, int]] = []
        for k, message in enumerate(messages):
            if message["role"] == "assistant":
                own.append((len(prompts), len(plain)))
                prompts.append(messages[:k])
                plain.append(messages[: k + 1])
        turns.append(own)
    plain_texts = render_all(tokenizer, plain)
    prompt_texts = render_all(tokenizer, prompts, add_generation_prompt=True)
    result: list[list[tuple[str, bool]]] = []
    at = 0
    for conversation, own in zip(conversations, turns, strict=True):
        full = plain_texts[at]
        at += 1 + len(own)
        pieces: list[tuple[str, bool]] = []
        done = 0
        for prompt_at, upto_at in own:
            prompt, upto = prompt_texts[prompt_at], plain_texts[upto_at]
            if not (full.startswith(upto) and upto.startswith(prompt) and len(prompt) >= done):
                raise DataError(
                    f"{conversation.where}: data.tokenizer: the tokenizer's chat template does "
                    "not render this conversation's first messages as the start of the whole "
                    "(it rewrites earlier turns), so the assistant's tokens cannot be found"
                )
            end = len(upto.rstrip())
            if end > len(prompt):
                pieces += [(full[done : len(prompt)], False), (full[len(prompt) : end], True)]
                done = end
        pieces.append((full[done:], False))
        result.append([(text, trained) for text, trained in pieces if text])
    return result


def encode(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation]
) -> list[tuple[list[int], list[bool]]]:
    """Each conversation's token ids and, per token, whether it is trained on."""
    pieces = segments(tokenizer, conversations)
    flat = [text for parts in pieces for text, _ in parts]
    ids = iter(tokenizer(flat, add_special_tokens=False)["input_ids"]) if flat else iter([])
    encoded: list[tuple[list[int], list[bool]]] = []
    for parts in pieces:
        tokens: list[int] = []
        trained: list[bool] = []
        for _, is_trained in parts:
            piece = next(ids)
            tokens += piece
            trained += [is_trained] * len(piece)
        encoded.append((tokens, trained))
    return encoded


def shift(
    tokens: list[int], trained: list[bool], context: int, where: str, overlong: str | None
) -> Encoded | None:
    """Inputs and next-token targets of one conversation; None when it is dropped."""
    truncated = len(tokens) - 1 > context
    if truncated:
        if overlong is None:
            raise DataError(
                f"{where}: data.params.context_length: the conversation has {len(tokens)} "
                f"tokens, more than context_length + 1 = {context + 1}; set "
                "data.params.overlong to 'truncate' or 'drop', or raise data.params.context_length"
            )
        if overlong == "drop":
            return None
        tokens, trained = tokens[: context + 1], trained[: context + 1]
    targets = [t if keep else IGNORE_INDEX for t, keep in zip(tokens[1:], trained[1:], strict=True)]
    result = Encoded(tokens[:-1], targets, truncated)
    return result if result.trained else None


@dataclass(frozen=True)
class Rows:
    """Model rows (R, T): inputs, targets and position ids (None: 0..T-1)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor | None


def pack(encoded: Sequence[Encoded], context: int, pad_id: int) -> tuple[Rows, int]:
    """Whole conversations in rows of ``context`` (best fit, longest first), positions
    restarting at 0 at each one and in each row's padding; and the tokens used."""
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i].inputs), i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for i in order:
        size = len(encoded[i].inputs)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, row = free.pop(at)
        else:
            room, row = context, len(rows)
            rows.append([])
        rows[row].append(i)
        if room - size > 0:
            bisect.insort(free, (room - size, row))
    inputs = torch.full((len(rows), context), pad_id, dtype=torch.int64)
    targets = torch.full((len(rows), context), IGNORE_INDEX, dtype=torch.int64)
    positions = torch.zeros((len(rows), context), dtype=torch.int64)
    used = 0
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            item = encoded[i]
            stop = start + len(item.inputs)
            inputs[r, start:stop] = torch.tensor(item.inputs)
            targets[r, start:stop] = torch.tensor(item.targets)
            positions[r, start:stop] = torch.arange(stop - start)
            start = stop
        positions[r, start:] = torch.arange(context - start)
        used += start
    return Rows(inputs, targets, positions), used


def pad(encoded: Sequence[Encoded], context: int, pad_id: int) -> tuple[Rows, int]:
    """One conversation a row, padded (inputs ``pad_id``, targets IGNORE_INDEX)."""
    inputs = torch.full((len(encoded), context), pad_id, dtype=torch.int64)
    targets = torch.full((len(encoded), context), IGNORE_INDEX, dtype=torch.int64)
    used = 0
    for r, item in enumerate(encoded):
        n = len(item.inputs)
        inputs[r, :n] = torch.tensor(item.inputs)
        targets[r, :n] = torch.tensor(item.targets)
        used += n
    return Rows(inputs, targets, None), used


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


@DATASETS.register(
    "chat",
    ChatParams,
    "chat fine-tuning on JSONL conversations, the loss on the assistant's tokens only",
)
def chat(
    params: ChatParams, *, val_fraction: float, seed: int, tokenizer: str | None = None
) -> PreparedData:
    """Conversations rendered by the tokenizer's chat template, split whole, packed or padded."""
    from raylift.data.tokenizer import tokenizer_hash

    tok = chat_tokenizer(tokenizer)
    conversations, source = read_conversations(params)
    context = params.context_length
    kept: list[tuple[Conversation, Encoded]] = []
    dropped = 0
    for conversation, (tokens, trained) in zip(
        conversations, encode(tok, conversations), strict=True
    ):
        item = shift(tokens, trained, context, conversation.where, params.overlong)
        if item is None:
            dropped += 1
        else:
            kept.append((conversation, item))
    if not kept:
        raise DataError(
            f"{source}: data.params.overlong: every conversation is longer than "
            f"context_length + 1 = {context + 1} tokens (or has no assistant token within "
            "it); raise data.params.context_length"
        )
    train_idx, val_idx = split_indices(len(kept), val_fraction, seed)
    train = [kept[i][1] for i in train_idx.tolist()]
    val = [kept[i][1] for i in val_idx.tolist()]
    layout = pack if params.packing else pad
    pad_id = pad_token_id(tok)
    train_rows, train_used = layout(train, context, pad_id)
    val_rows, val_used = layout(val, context, pad_id)
    vocab = len(tok)
    sample = val_idx[: params.sample_size].tolist()
    sample_rows, _ = pad([kept[i][1] for i in sample], context, pad_id)
    trained_train = train_rows.targets[train_rows.targets != IGNORE_INDEX]
    trained_val = val_rows.targets[val_rows.targets != IGNORE_INDEX]
    truncated = sum(item.truncated for _, item in kept)
    rows = len(train_rows.inputs) + len(val_rows.inputs)
    filled = (train_used + val_used) / (rows * context)
    return PreparedData(
        train_inputs=train_rows.inputs,
        train_targets=train_rows.targets,
        val_inputs=val_rows.inputs,
        val_targets=val_rows.targets,
        train_positions=train_rows.positions,
        val_positions=val_rows.positions,
        info=DatasetInfo(
            task="language_modeling",
            input_shape=(context,),
            vocab_size=vocab,
            input_dtype="int64",
        ),
        preprocessing={
            "type": "tokenizer",
            "context_length": context,
            "tokenizer_hash": tokenizer_hash(tok),
            "vocab_size": vocab,
            "chat": True,
        },
        sample_raw_inputs=[kept[i][0].messages for i in sample],
        sample_targets=sample_rows.targets,
        baselines={"unigram_loss": unigram_loss(trained_train, trained_val, vocab)},
        description=(
            f"chat: {source}, {len(conversations)} conversations ({truncated} truncated, "
            f"{dropped} dropped: longer than context_length + 1 = {context + 1} tokens, or no "
            "assistant token within them); "
            f"{len(train)} train / {len(val)} validation conversations "
            f"{'packed' if params.packing else 'padded'} into {len(train_rows.inputs)} / "
            f"{len(val_rows.inputs)} rows of {context} tokens ({filled:.0%} filled), "
            f"{len(trained_train) + len(trained_val)} trained (assistant) tokens"
        ),
        tokenizer_path=str(tokenizer),
    )
