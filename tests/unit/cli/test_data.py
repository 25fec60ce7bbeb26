"""``raylift data prepare`` (CliRunner, in-process): shards out; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raylift.cli.main import cli
from raylift.data.token_shards import read_index
from raylift.data.tokenizer import train_tokenizer


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(["licenses"], 300, out)
    return str(out)


def test_prepare_prints_what_it_wrote(tmp_path: Path, tok: str) -> None:
    text = tmp_path / "a.txt"
    text.write_text("\n\n".join(f"paragraph {i} of the text" for i in range(20)))
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "data", "prepare", "--tokenizer", tok, "--out", str(out), "--val-fraction", "0.25",
        "--seed", "2", "--in-process", str(text), "licenses",
    )  # fmt: skip
    assert code == 0, stderr
    index = read_index(str(out))
    assert f"documents        {index['documents']:,}" in stdout
    assert f"({index['split']['train']['documents']:,} train" in stdout
    assert f"tokens           {index['tokens']:,}  (uint16, vocabulary 300)" in stdout
    assert "shards           1" in stdout and "bytes per token" in stdout
    assert index["split"]["seed"] == 2 and index["split"]["val_fraction"] == 0.25
    assert index["inputs"] == [str(text), "builtin corpus 'licenses'"]


@pytest.mark.parametrize(
    ("change", "option", "message"),
    [
        ({"--val-fraction": "1.5"}, "--val-fraction", "between 0 and 1"),
        ({"--tokenizer": "nowhere"}, "--tokenizer", "does not exist"),
        ({"files": "missing.txt"}, "FILES", "does not exist"),
        ({"files": "*.nothing"}, "FILES", "matches no files"),
        ({"--text-field": "body", "files": "r.jsonl"}, "FILES", "r.jsonl:1: the record has no"),
    ],
)
def test_bad_input_names_the_option_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tok: str,
    change: dict[str, str],
    option: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.jsonl").write_text('{"text": "hello"}\n')
    options = {"--tokenizer": tok, "--out": "out", "--val-fraction": "0.1", "--text-field": "text"}
    options.update({k: v for k, v in change.items() if k != "files"})
    args = [item for pair in options.items() for item in pair]
    code, _, stderr = run("data", "prepare", *args, "--in-process", change.get("files", "r.jsonl"))
    assert code == 2, stderr
    assert f"{option}:" in stderr and message in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_a_non_empty_out_needs_overwrite(tmp_path: Path, tok: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("x")
    code, _, stderr = run("data", "prepare", "--tokenizer", tok, "--out", str(out), "licenses")
    assert code == 2 and "--out:" in stderr and "--overwrite" in stderr
    code, _, stderr = run(
        "data", "prepare", "--tokenizer", tok, "--out", str(out), "--overwrite", "licenses"
    )
    assert code == 0, stderr
    assert not (out / "old").exists() and (out / "index.json").is_file()
