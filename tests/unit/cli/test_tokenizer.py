"""``raylift tokenizer train`` (CliRunner): HF files out; bad input exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raylift.cli.main import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_train_writes_hf_tokenizer(tmp_path: Path) -> None:
    out = tmp_path / "tok"
    code, stdout, stderr = run(
        "tokenizer", "train", "--corpus", "python-docs", "--vocab-size", "512", "--out", str(out)
    )
    assert code == 0, stderr
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(files(out))
    assert "vocabulary size  512" in stdout and "bytes per token" in stdout
    assert str(out) in stdout and "sha256" in stdout

    from raylift.data.tokenizer import load_tokenizer, tokenizer_hash

    assert tokenizer_hash(load_tokenizer(out)) in stdout

    # --overwrite replaces it (here with files and a glob).
    (tmp_path / "a.txt").write_text("first file of text, with some words\n" * 40)
    (tmp_path / "b.txt").write_text("second file of text: more words\n" * 40)
    (out / "stale.txt").write_text("from before")
    code, stdout, stderr = run(
        "tokenizer", "train", "--corpus", str(tmp_path / "a.txt"), "--corpus",
        str(tmp_path / "*.txt"), "--vocab-size", "300", "--out", str(out), "--overwrite",
        "--min-frequency", "1",
    )  # fmt: skip
    assert code == 0, stderr
    assert "bytes per token" in stdout and str(out) in stdout
    # That corpus is too small for 300 tokens: the summary says so.
    assert "300 asked for" in stdout
    assert not (out / "stale.txt").exists() and (out / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--corpus", "nothing/*.txt"], "--corpus", "matches no files"),
        (["--corpus", "missing.txt"], "--corpus", "does not exist"),
        (["--corpus", "empty.txt"], "--corpus", "is empty"),
        (["--corpus", "binary.bin"], "--corpus", "not UTF-8"),
        (["--corpus", "python-docs", "--vocab-size", "100"], "--vocab-size", "at least 259"),
        (["--corpus", "python-docs", "--vocab-size", "99999999"], "--vocab-size", "larger than"),
        (["--corpus", "python-docs", "--out", "full"], "--out", "not empty"),
        (["--corpus", "python-docs", "--out", "empty.txt"], "--out", "not a directory"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    args: list[str], option: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.bin").write_bytes(b"\x00\xff\xfe\x80 not text\n" * 10)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("keep")
    before = files(tmp_path)
    if "--vocab-size" not in args:
        args = [*args, "--vocab-size", "512"]
    if "--out" not in args:
        args = [*args, "--out", "out"]
    code, stdout, stderr = run("tokenizer", "train", *args)
    assert code == 2, stdout + stderr
    assert f"{option}: " in stderr and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert files(tmp_path) == before


def test_corpus_and_vocab_size_are_required() -> None:
    code, _, stderr = run("tokenizer", "train", "--out", "x", "--vocab-size", "512")
    assert code == 2 and "--corpus" in stderr
    code, _, stderr = run("tokenizer", "train", "--corpus", "python-docs", "--vocab-size", "lots")
    assert code == 2 and "--vocab-size" in stderr
