"""The chat data set: ChatML rendering, the assistant-only loss mask, packing, padding,
overlong conversations and every malformed record (a tokenizer trained here)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from raylift.data import PreparedData, load_dataset
from raylift.data.base import IGNORE_INDEX
from raylift.data.chat import builtin_chat_corpus, check_record
from raylift.data.tokenizer import TokenizerInfo, load_tokenizer, train_tokenizer
from raylift.errors import DataError, SpecError
from raylift.specs import check_runnable, load_spec
from raylift.testing.specs import error_of, write

IM_START, IM_END, PAD = 1, 2, 0  # ids of <|im_start|>, <|im_end|>, <|endoftext|>


@pytest.fixture(scope="module")
def tok_info(tmp_path_factory: pytest.TempPathFactory) -> TokenizerInfo:
    return train_tokenizer(["python-docs"], 512, tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="module")
def tok_path(tok_info: TokenizerInfo) -> str:
    return str(tok_info.path)


@pytest.fixture(scope="module")
def enc(tok_path: str) -> Any:
    tokenizer = load_tokenizer(tok_path)
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def _load(tok: str | None, val: float = 0.1, seed: int = 0, **params: Any) -> PreparedData:
    return load_dataset("chat", params, val_fraction=val, seed=seed, tokenizer=tok)


def _jsonl(tmp_path: Path, records: list[Any], name: str = "chat.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _turns(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": text} for role, text in pairs]}


HELLO = _turns(("user", "Hi"), ("assistant", "Hello there."))


# --- the loss mask ------------------------------------------------------------------------


def test_two_turn_loss_mask_by_hand(tmp_path: Path, tok_path: str, enc: Any) -> None:
    data = _load(
        tok_path,
        val=0.5,
        paths=[_jsonl(tmp_path, [HELLO, HELLO])],
        packing=False,
        context_length=32,
    )
    # <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n | Hello there.<|im_end|> | \n
    prompt = [IM_START, *enc("user\nHi"), IM_END, *enc("\n"), IM_START, *enc("assistant\n")]
    answer = [*enc("Hello there."), IM_END]
    tokens = prompt + answer + enc("\n")
    n = len(tokens) - 1  # 19 inputs, each predicting the next token
    inputs = tokens[:-1] + [PAD] * (32 - n)
    targets = [IGNORE_INDEX] * (len(prompt) - 1) + answer + [IGNORE_INDEX] * (32 - n + 1)
    for split_inputs, split_targets in (
        (data.train_inputs, data.train_targets),
        (data.val_inputs, data.val_targets),
    ):
        assert split_inputs.tolist() == [inputs]
        assert split_targets.tolist() == [targets]
    assert data.train_positions is None and data.val_positions is None
    decoded = load_tokenizer(tok_path).decode(data.val_targets[0][data.val_targets[0] >= 0])
    assert decoded == "Hello there.<|im_end|>"


def test_every_assistant_turn_and_only_those_train(tmp_path: Path, tok_path: str) -> None:
    talk = _turns(
        ("system", "Be brief."),
        ("user", "What is a list?"),
        ("assistant", "A mutable sequence."),
        ("user", "And a tuple?"),
        ("assistant", "An immutable one."),
    )
    data = _load(tok_path, val=0.5, paths=[_jsonl(tmp_path, [talk, talk])], context_length=128)
    row = data.val_targets[0]
    decoded = load_tokenizer(tok_path).decode(row[row >= 0])
    assert decoded == "A mutable sequence.<|im_end|>An immutable one.<|im_end|>"


# --- packing and padding ------------------------------------------------------------------


def _conversations(inputs: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> list:
    """The (inputs, targets) of each conversation of packed rows, cut where positions restart."""
    found = []
    for row_in, row_t, row_p in zip(
        inputs.tolist(), targets.tolist(), positions.tolist(), strict=True
    ):
        starts = [i for i, p in enumerate(row_p) if p == 0] + [len(row_p)]
        for a, b in itertools.pairwise(starts):
            if row_in[a] == IM_START:
                found.append((tuple(row_in[a:b]), tuple(row_t[a:b])))
            else:  # the row's padding tail
                assert b == len(row_p) and set(row_in[a:b]) == {PAD}
                assert set(row_t[a:b]) == {IGNORE_INDEX}
    return found


def _padded(inputs: torch.Tensor, targets: torch.Tensor) -> list:
    found = []
    for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
        n = max(i for i, t in enumerate(row_t) if t != IGNORE_INDEX) + 1
        while n < len(row_in) and row_in[n] != PAD:
            n += 1
        found.append((tuple(row_in[:n]), tuple(row_t[:n])))
    return found


def test_packing_keeps_conversations_whole_with_restarting_positions(tok_path: str) -> None:
    packed = _load(tok_path, context_length=512)
    padded = _load(tok_path, context_length=512, packing=False)
    assert packed.train_positions is not None and packed.val_positions is not None
    assert packed.train_positions.shape == packed.train_inputs.shape
    assert packed.num_train < padded.num_train  # several conversations a row
    assert padded.num_train + padded.num_val == 244
    for split in ("train", "val"):
        inputs, targets = getattr(packed, f"{split}_inputs"), getattr(packed, f"{split}_targets")
        positions = getattr(packed, f"{split}_positions")
        found = _conversations(inputs, targets, positions)
        for row_p in positions:  # positions count up by 1 within a segment
            steps = torch.diff(row_p)
            assert bool(((steps == 1) | (row_p[1:] == 0)).all())
        # The same conversations as one a row (padding mode), none cut or split.
        alone = _padded(getattr(padded, f"{split}_inputs"), getattr(padded, f"{split}_targets"))
        assert sorted(found) == sorted(alone)
        # A conversation's last target is the template's "\n": never the next one's token.
        assert all(t[-1] == IGNORE_INDEX for _, t in found)
    assert packed.baselines == pytest.approx(padded.baselines)


def test_padding_mode_rows(tok_path: str) -> None:
    data = _load(tok_path, context_length=512, packing=False)
    assert data.train_positions is None
    for row_in, row_t in zip(data.train_inputs.tolist(), data.train_targets.tolist(), strict=True):
        assert row_in[0] == IM_START
        n = row_in.index(PAD) if PAD in row_in else len(row_in)
        assert set(row_in[n:]) <= {PAD} and set(row_t[n:]) <= {IGNORE_INDEX}
        assert any(t != IGNORE_INDEX for t in row_t[:n])


def test_split_is_by_conversation_and_deterministic(tok_path: str) -> None:
    a, b = _load(tok_path, context_length=512, seed=3), _load(tok_path, context_length=512, seed=3)
    assert torch.equal(a.train_inputs, b.train_inputs) and torch.equal(a.val_inputs, b.val_inputs)
    other = _load(tok_path, context_length=512, seed=4)
    assert not torch.equal(a.val_inputs, other.val_inputs)
    assert "220 train / 24 validation conversations" in a.description


def test_what_the_export_and_serving_get(tok_info: TokenizerInfo) -> None:
    data = _load(str(tok_info.path), context_length=256, overlong="truncate", sample_size=3)
    assert data.preprocessing == {
        "type": "tokenizer",
        "context_length": 256,
        "tokenizer_hash": tok_info.hash,
        "vocab_size": 512,
        "chat": True,
    }
    assert data.tokenizer_path == str(tok_info.path)
    assert data.info.vocab_size == 512 and data.info.input_shape == (256,)
    assert len(data.sample_raw_inputs) == 3 and data.sample_targets.shape == (3, 256)
    for messages in data.sample_raw_inputs:
        assert check_record({"messages": messages}, "sample") == messages
    # The unigram baseline over the trained (assistant) tokens: well below uniform log(512).
    assert 3.0 < data.baselines["unigram_loss"] < math.log(512)


# --- overlong conversations ---------------------------------------------------------------

LONG_ANSWER = _turns(("user", "Say a lot."), ("assistant", "word " * 200))
LONG_SYSTEM = _turns(("system", "rule " * 200), ("user", "Hi"), ("assistant", "Hello."))


def test_line_numbers_count_newlines_only(tmp_path: Path, tok_path: str) -> None:
    # U+2028 (a line separator to str.splitlines) may stand raw inside a JSON string.
    odd = _turns(("user", "a\u2028b"), ("assistant", "c\u2029d"))
    path = tmp_path / "odd.jsonl"
    text = json.dumps(odd, ensure_ascii=False) + "\r\n" + json.dumps(HELLO) + "\n{\n"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(DataError, match=rf"{path}:3: data.params.paths: invalid JSON"):
        _load(tok_path, paths=[str(path)])
    path.write_text(text[: text.rindex("{")], encoding="utf-8", newline="")
    data = _load(tok_path, val=0.5, paths=[str(path)], context_length=64, packing=False)
    assert data.sample_raw_inputs[0] in (odd["messages"], HELLO["messages"])


def test_truncate_and_drop_are_counted(tmp_path: Path, tok_path: str) -> None:
    path = _jsonl(tmp_path, [HELLO, LONG_ANSWER, LONG_SYSTEM, HELLO])
    # truncate: the long answer keeps its first tokens; the long system prompt leaves
    # no assistant token within the context, so it is dropped.
    cut = _load(tok_path, val=0.34, paths=[path], context_length=48, overlong="truncate")
    assert "4 conversations (1 truncated, 1 dropped" in cut.description
    rows = torch.cat([cut.train_inputs, cut.val_inputs])
    positions = torch.cat([cut.train_positions, cut.val_positions])
    whole = [i for i in range(len(rows)) if torch.equal(positions[i], torch.arange(48))]
    assert len(whole) == 1 and PAD not in rows[whole[0]].tolist()  # the cut one fills a row
    drop = _load(tok_path, val=0.5, paths=[path], context_length=48, overlong="drop")
    assert "4 conversations (0 truncated, 2 dropped" in drop.description


def test_overlong_unset_is_an_error_naming_the_line(tmp_path: Path, tok_path: str) -> None:
    path = _jsonl(tmp_path, [HELLO, LONG_ANSWER])
    with pytest.raises(DataError, match=rf"{path}:2: data.params.context_length: .*overlong"):
        _load(tok_path, paths=[path], context_length=48)


def test_drop_leaving_nothing_is_an_error(tmp_path: Path, tok_path: str) -> None:
    path = _jsonl(tmp_path, [LONG_ANSWER, LONG_SYSTEM])
    with pytest.raises(DataError, match="every conversation is longer than"):
        _load(tok_path, paths=[path], context_length=48, overlong="drop")


# --- bad input ----------------------------------------------------------------------------

BAD_LINES = {
    "invalid JSON": ('{"messages": [', r"invalid JSON \(Expecting value at column 15\)"),
    "not an object": ("[1, 2]", 'the record has no "messages"'),
    "no messages": ('{"text": "hi"}', 'the record has no "messages"'),
    "empty messages": ('{"messages": []}', '"messages" must be a non-empty list'),
    "message without role": ('{"messages": [{"content": "x"}]}', 'message 0 needs a "role"'),
    "message without content": (
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}',
        'message 1 needs a "role" and a "content"',
    ),
    "unknown role": (
        '{"messages": [{"role": "tool", "content": "x"}]}',
        "message 0 has an unknown role 'tool' \\(known: system, user, assistant\\)",
    ),
    "content not a string": (
        '{"messages": [{"role": "user", "content": ["x"]}]}',
        'message 0: "content" must be a string, not list',
    ),
    "no assistant turn": (
        '{"messages": [{"role": "user", "content": "hello?"}]}',
        "the conversation has no assistant message",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_malformed_record_names_file_line_and_key(
    tmp_path: Path, tok_path: str, case: str
) -> None:
    line, message = BAD_LINES[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HELLO) + "\n\n" + line + "\n")  # line 3 (a blank line skipped)
    with pytest.raises(DataError, match=rf"^{path}:3: data.params.paths: {message}"):
        _load(tok_path, paths=[str(path)])


def test_bad_paths(tmp_path: Path, tok_path: str) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"messages": "caf\xe9"}\n')
    cases = {
        str(empty): f"{empty}: data.params.paths: the file is empty",
        str(blank): f"{blank}: data.params.paths: the file has no conversations",
        str(latin): f"{latin}: data.params.paths: not UTF-8 text",
        str(tmp_path / "missing.jsonl"): "data.params.paths: text file .* does not exist",
        str(tmp_path / "*.json"): "data.params.paths: text path pattern .* matches no files",
        str(tmp_path): "data.params.paths: text path .* is not a file",
    }
    for path, message in cases.items():
        with pytest.raises(DataError, match=message):
            _load(tok_path, paths=[path])


def test_a_missing_path_is_a_spec_error_before_anything_starts(tmp_path: Path) -> None:
    job = "name: t\nmodel: {name: mlp}\ndata: {name: chat, params: {paths: [nope.jsonl]}}\n"
    error = error_of(tmp_path, job)
    assert error.key == "data.params" and "data.params.paths" in error.message


def test_no_tokenizer_is_a_spec_error_before_anything_starts(tmp_path: Path, tok_path: str) -> None:
    job = "name: t\nmodel: {name: mlp}\ndata: {name: chat}\n"
    error = error_of(tmp_path, job)
    assert error.key == "data.tokenizer" and "needs a tokenizer" in error.message
    assert error.file == str(tmp_path / "job.yaml")
    missing = "name: t\nmodel: {name: mlp}\ndata: {name: chat, tokenizer: nowhere}\n"
    assert "does not exist" in error_of(tmp_path, missing).message
    # The hf model's own directory holds the default tokenizer.
    model_dir = tmp_path / "model"
    shutil.copytree(tok_path, model_dir)
    (model_dir / "config.json").write_text("{}")
    path = write(
        tmp_path,
        f"name: t\nmodel: {{name: hf, params: {{path: {model_dir}}}}}\ndata: {{name: chat}}\n",
    )
    check_runnable(load_spec(path), file=str(path))


def test_tokenizer_errors(tmp_path: Path, tok_info: TokenizerInfo) -> None:
    with pytest.raises(SpecError, match="needs a tokenizer with a chat template") as caught:
        _load(None)
    assert caught.value.key == "data.tokenizer"
    with pytest.raises(SpecError, match="does not exist") as caught:
        _load(str(tmp_path / "nowhere"))
    assert caught.value.key == "data.tokenizer"
    bare = tmp_path / "bare.json"
    shutil.copy(tok_info.path / "tokenizer.json", bare)  # no tokenizer_config: no template
    with pytest.raises(SpecError, match="has no chat template") as caught:
        _load(str(bare))
    assert caught.value.key == "data.tokenizer"


def test_a_template_that_rewrites_earlier_turns_is_refused(
    tmp_path: Path, tok_info: TokenizerInfo
) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(tok_info.path, odd)
    # Renders only the last message: a conversation's prefix is not the start of it.
    (odd / "chat_template.jinja").write_text("{{ messages[-1]['content'] }}")
    path = _jsonl(tmp_path, [HELLO, HELLO])
    with pytest.raises(DataError, match=rf"{path}:1: data.tokenizer: .*does not render"):
        _load(str(odd), paths=[path])


def test_paths_and_corpus_are_exclusive(tmp_path: Path, tok_path: str) -> None:
    with pytest.raises(ValueError, match="either paths or corpus"):
        _load(tok_path, paths=[_jsonl(tmp_path, [HELLO])], corpus="python-docs-qa")


def test_the_builtin_corpus_is_well_formed() -> None:
    lines = builtin_chat_corpus("python-docs-qa").splitlines()
    assert len(lines) == 244
    records = [json.loads(line) for line in lines]
    for n, record in enumerate(records, start=1):
        check_record(record, f"python-docs-qa.jsonl:{n}")
    assert sum(r["messages"][0]["role"] == "system" for r in records) == 82
    assert sum(sum(m["role"] == "user" for m in r["messages"]) > 1 for r in records) == 181
