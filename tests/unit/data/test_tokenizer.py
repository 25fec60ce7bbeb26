"""Byte-level BPE tokenizers: trained on the builtin Python-docs corpus, saved in HF format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raylift.data.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    ENDOFTEXT,
    TokenizerInfo,
    bytes_per_token,
    load_tokenizer,
    tokenizer_hash,
    train_tokenizer,
)
from raylift.errors import DataError

TEXT = "naïve café — Grüße, 東京 🙂\n\tdef f(x): return x ** 2  # ok"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TokenizerInfo:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return train_tokenizer(["python-docs"], 512, out)


def test_train_saves_hf_files_and_reports(trained: TokenizerInfo) -> None:
    assert trained.vocab_size == 512
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(trained.files)
    assert sorted(p.name for p in trained.path.iterdir()) == trained.files  # no staging left
    assert not [p for p in trained.path.parent.iterdir() if p.name.startswith(".")]
    assert 1.5 < trained.bytes_per_token < 5
    assert trained.corpus_bytes == trained.measured_bytes > 400_000
    assert len(trained.hash) == 64


def test_round_trip_non_ascii_and_special_tokens(trained: TokenizerInfo) -> None:
    tok = load_tokenizer(trained.path)
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert tok.decode(ids) == TEXT
    assert max(ids) < 512 and len(ids) < len(TEXT.encode("utf-8"))  # merges were learnt
    assert trained.special_tokens == {t: i for i, t in enumerate(DEFAULT_SPECIAL_TOKENS)}
    assert tok.convert_tokens_to_ids(list(DEFAULT_SPECIAL_TOKENS)) == [0, 1, 2]
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == (ENDOFTEXT,) * 3
    assert tok.eos_token_id == tok.pad_token_id == 0
    # A special token in text is one token, not split into bytes.
    assert tok.encode(f"a{ENDOFTEXT}b", add_special_tokens=False)[1] == 0


def test_chat_template_with_generation_prompt(trained: TokenizerInfo) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(trained.path))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a list?"},
    ]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is a list?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = tok.apply_chat_template(messages, tokenize=False)
    assert plain + "<|im_start|>assistant\n" == text
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    assert ids.count(1) == 3 and ids.count(2) == 2 and tok.decode(ids) == text


def test_directory_and_bare_file_give_the_same_ids(trained: TokenizerInfo, tmp_path: Path) -> None:
    bare = tmp_path / "only" / "tokenizer.json"
    bare.parent.mkdir()
    shutil.copy(trained.path / "tokenizer.json", bare)
    from_dir = load_tokenizer(trained.path)
    from_file = load_tokenizer(bare)
    beside_config = load_tokenizer(trained.path / "tokenizer.json")
    ids = from_dir.encode(TEXT)
    assert from_file.encode(TEXT) == ids == beside_config.encode(TEXT)
    assert from_file.eos_token_id == 0 and from_file.chat_template is None
    assert beside_config.chat_template == from_dir.chat_template is not None


def test_hash_is_stable_across_reload_and_depends_on_vocab(
    trained: TokenizerInfo, tmp_path: Path
) -> None:
    tok = load_tokenizer(trained.path)
    assert tokenizer_hash(tok) == trained.hash
    assert tokenizer_hash(tok.backend_tokenizer) == trained.hash
    tok(["a", "a longer text"], padding=True, truncation=True, max_length=4)  # runtime state
    assert tokenizer_hash(tok) == trained.hash
    assert tokenizer_hash(load_tokenizer(trained.path / "tokenizer.json")) == trained.hash
    other = train_tokenizer(["python-docs"], 600, tmp_path / "other")
    assert other.vocab_size == 600 and other.hash != trained.hash


def test_bytes_per_token_is_bytes_over_tokens(trained: TokenizerInfo) -> None:
    tok = load_tokenizer(trained.path)
    per_token, measured = bytes_per_token(tok, [TEXT, TEXT])
    assert measured == 2 * len(TEXT.encode("utf-8"))
    assert per_token == pytest.approx(measured / (2 * len(tok.encode(TEXT))))


def test_files_and_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.txt").write_text(f"{TEXT}\nline {i} of the corpus text\n" * 50)
    monkeypatch.chdir(tmp_path)
    info = train_tokenizer(["corpus/*.txt"], 300, "out", min_frequency=1)
    assert info.vocab_size == 300 and (tmp_path / "out" / "tokenizer.json").is_file()
    assert load_tokenizer("out").decode(load_tokenizer("out").encode(TEXT)) == TEXT


@pytest.mark.parametrize("kind", ["missing", "empty dir", "text file", "bad json"])
def test_bad_tokenizer_paths_name_the_path(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "thing"
    if kind == "empty dir":
        path.mkdir()
    elif kind == "text file":
        path.write_text("hello, not a tokenizer\n")
    elif kind == "bad json":
        path.mkdir()
        (path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(DataError, match=str(path)):
        load_tokenizer(path)


def test_remote_code_is_never_run(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "Evil", "auto_map": {"AutoTokenizer": ["evil.EvilTok", null]}}'
    )
    (tmp_path / "evil.py").write_text("raise SystemExit('ran remote code')\n")
    with pytest.raises(DataError, match=str(tmp_path)):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("corpus", "vocab", "match"),
    [
        (["nowhere/*.txt"], 512, "matches no files"),
        (["missing.txt"], 512, "does not exist"),
        (["empty.txt"], 512, "is empty"),
        (["latin1.txt"], 512, "not UTF-8"),
        (["python-docs"], 258, "at least 259"),
        (["python-docs"], 1 << 24, "larger than"),
    ],
)
def test_bad_training_input_writes_nothing(
    corpus: list[str], vocab: int, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("Grüße\n".encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=match):
        train_tokenizer(corpus, vocab, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_non_empty_out_needs_overwrite(trained: TokenizerInfo, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    shutil.copytree(trained.path, out)
    (out / "stale.txt").write_text("old")
    with pytest.raises(DataError, match="not empty"):
        train_tokenizer(["licenses"], 300, out)
    info = train_tokenizer(["licenses"], 300, out, overwrite=True)
    assert not (out / "stale.txt").exists() and info.hash != trained.hash
