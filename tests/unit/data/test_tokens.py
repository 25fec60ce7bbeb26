"""Token shards (in-process): prepare, index, held-out documents, lazy windows, errors."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raylift.data.base import load_dataset
from raylift.data.preprocessing import unigram_loss
from raylift.data.token_prepare import prepare_tokens
from raylift.data.token_shards import ShardWriter, dtype_for, read_index
from raylift.data.token_windows import TokenWindows
from raylift.data.tokenizer import ENDOFTEXT, load_tokenizer, train_tokenizer
from raylift.data.tokens import prepared_dir
from raylift.errors import DataError, SpecError
from raylift.specs import spec_from_dict

PARAGRAPHS = [
    f"Paragraph {i}: the licence grants rights to copy, {i * 7} times." for i in range(40)
]
RECORDS = [{"text": f"Record {i} says hello to the world {i % 5}.", "id": i} for i in range(30)]
ROWS = [f"Row {i} of the table holds some text." for i in range(30)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(["licenses"], 300, out)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "a.txt").write_text("\n\n".join(PARAGRAPHS) + "\n")
    (root / "b.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    pq.write_table(pa.table({"body": ROWS, "n": list(range(30))}), root / "c.parquet")
    return {
        "root": root,
        "txt": root / "a.txt",
        "jsonl": root / "b.jsonl",
        "pq": root / "c.parquet",
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, tok: Path, inputs: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "shards"
    prepare_tokens(
        [str(inputs["txt"]), str(inputs["jsonl"])],
        tok,
        str(out),
        val_fraction=0.2,
        seed=3,
        parallel=False,
        shard_tokens=400,
    )
    return out


def _shard_tokens(folder: Path) -> list[np.ndarray]:
    index = read_index(str(folder))
    return [np.fromfile(folder / s["file"], dtype=index["dtype"]) for s in index["shards"]]


def _split_stream(folder: Path, split: str) -> np.ndarray:
    shards = _shard_tokens(folder)
    spans = np.load(folder / f"{split}_spans.npy")
    return np.concatenate([shards[s][a:b] for s, a, b, _ in spans.T])


def test_prepare_writes_documents_with_one_separator_each(prepared: Path, tok: Path) -> None:
    index = read_index(str(prepared))
    tokenizer = load_tokenizer(tok)
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert index["dtype"] == "uint16" and index["vocab_size"] == len(tokenizer) == 300
    assert index["documents"] == len(PARAGRAPHS) + len(RECORDS)
    assert len(index["shards"]) > 1  # 400 tokens per shard at most
    assert all(s["tokens"] <= 400 for s in index["shards"])
    texts: list[str] = []
    for record, tokens in zip(index["shards"], _shard_tokens(prepared), strict=True):
        offsets = np.load(prepared / record["offsets"])
        assert len(tokens) == record["tokens"] == offsets[-1]
        assert len(offsets) - 1 == record["documents"]
        for start, stop in itertools.pairwise(offsets):
            assert tokens[stop - 1] == eot and eot not in tokens[start : stop - 1]
            texts.append(tokenizer.decode(tokens[start : stop - 1].tolist()))
    assert texts == PARAGRAPHS + [r["text"] for r in RECORDS]
    split = index["split"]
    assert split["train"]["documents"] + split["val"]["documents"] == index["documents"]
    assert split["val"]["documents"] == round(0.2 * index["documents"])
    assert split["train"]["tokens"] + split["val"]["tokens"] == index["tokens"]
    assert (prepared / "tokenizer" / "tokenizer.json").is_file()
    assert index["tokenizer_hash"] and len(index["tokenizer_hash"]) == 64
    assert not [p for p in prepared.parent.iterdir() if p.name.startswith(".")]  # no staging


def test_the_data_set_reads_windows_of_held_out_documents(prepared: Path, tok: Path) -> None:
    data = load_dataset(
        "tokens", {"path": str(prepared), "context_length": 8, "sample_size": 3},
        val_fraction=0.1, seed=0, tokenizer=str(tok),
    )  # fmt: skip
    train, val = _split_stream(prepared, "train"), _split_stream(prepared, "val")
    assert data.num_train == (len(train) - 1) // 8 and data.num_val == (len(val) - 1) // 8
    assert data.train_inputs.shape == (data.num_train, 8) and len(data.val_targets) == data.num_val
    rows = torch.tensor([0, 3, data.num_train - 1, 3])
    x, y = data.train_inputs[rows], data.train_targets[rows]
    assert x.dtype == y.dtype == torch.int64 and x.shape == (4, 8)
    for i, row in enumerate(rows.tolist()):  # stride T, context T + 1, in split order
        assert x[i].tolist() == train[row * 8 : row * 8 + 8].tolist()
        assert y[i].tolist() == train[row * 8 + 1 : row * 8 + 9].tolist()
    assert torch.equal(data.val_inputs[1:3], torch.tensor(val[8:24].astype(np.int64)).view(2, 8))
    assert data.val_inputs[-1].tolist() == val[(data.num_val - 1) * 8 :][:8].tolist()
    with pytest.raises(IndexError):
        data.train_inputs[torch.tensor([data.num_train])]
    tokenizer = load_tokenizer(tok)
    assert data.sample_raw_inputs == [tokenizer.decode(r.tolist()) for r in data.val_inputs[:3]]
    assert torch.equal(data.sample_targets, data.val_targets[:3])
    assert data.preprocessing == {
        "type": "tokenizer",
        "context_length": 8,
        "tokenizer_hash": read_index(str(prepared))["tokenizer_hash"],
        "vocab_size": 300,
    }
    assert data.info.vocab_size == 300 and data.info.input_shape == (8,)
    assert data.tokenizer_path == str(tok)
    expected = unigram_loss(
        torch.tensor(train.astype(np.int64)), torch.tensor(val.astype(np.int64)), 300
    )
    assert data.baselines["unigram_loss"] == pytest.approx(expected, rel=1e-9)


def test_windows_pickle_small_and_map_the_shards_only_when_indexed(prepared: Path) -> None:
    data = load_dataset(
        "tokens", {"path": str(prepared), "context_length": 8}, val_fraction=0.1, seed=0
    )
    windows = data.train_inputs
    assert isinstance(windows, TokenWindows)
    first = windows[torch.tensor([1, 2])]
    assert windows.windows._maps is not None  # opened by the indexing above
    blob = pickle.dumps(data)
    assert len(blob) < 20_000  # paths and the index, not tokens
    copy = pickle.loads(blob)
    assert copy.train_inputs.windows._maps is None
    assert torch.equal(copy.train_inputs[torch.tensor([1, 2])], first)
    assert copy.train_inputs.windows is copy.train_targets.windows  # one reader per split
    # Without data.tokenizer the shards' own copy decodes the samples.
    assert data.tokenizer_path == str(prepared / "tokenizer")


def test_jsonl_and_parquet_text_fields(tmp_path: Path, tok: Path, inputs: dict[str, Path]) -> None:
    out = tmp_path / "pq"
    summary = prepare_tokens(
        [str(inputs["pq"])], tok, str(out), text_field="body", val_fraction=0.1, parallel=False
    )
    assert summary.documents == len(ROWS) and summary.bytes_per_token > 1
    with pytest.raises(DataError, match=r"c\.parquet.*no text column 'text'.*body, n"):
        prepare_tokens([str(inputs["pq"])], tok, str(tmp_path / "x"), parallel=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: the record has no text field 'text'"):
        prepare_tokens([str(bad)], tok, str(tmp_path / "y"), parallel=False)
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not a JSON record"):
        prepare_tokens([str(bad)], tok, str(tmp_path / "y"), parallel=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing staged left


def test_bad_inputs_write_nothing(tmp_path: Path, tok: Path, inputs: dict[str, Path]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "out"
    for files, message in (
        ([str(empty)], "is empty"),
        ([str(tmp_path / "missing.txt")], "does not exist"),
        ([str(tmp_path / "*.md")], "matches no files"),
        ([str(tmp_path)], "is not a file"),
    ):
        with pytest.raises(DataError, match=message):
            prepare_tokens(files, tok, str(out), parallel=False)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n")
    with pytest.raises(DataError, match="have no text"):
        prepare_tokens([str(blank)], tok, str(out), parallel=False)
    with pytest.raises(DataError, match="val_fraction"):
        prepare_tokens([str(inputs["txt"])], tok, str(out), val_fraction=1.0, parallel=False)
    assert not out.exists()
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        prepare_tokens([str(inputs["txt"])], tok, str(out), parallel=False)
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_a_vocabulary_past_65536_ids_gets_uint32_shards(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    assert dtype_for(65_536) == np.uint16 and dtype_for(65_537) == np.uint32
    words = {ENDOFTEXT: 0, "[UNK]": 1} | {f"w{i}": i + 2 for i in range(70_000)}
    backend = Tokenizer(models.WordLevel(vocab=words, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=ENDOFTEXT, unk_token="[UNK]")
    big.save_pretrained(tmp_path / "big")
    source = tmp_path / "t.txt"
    source.write_text("w1 w69999 w2\n\nw3\n\nw66000 w4\n")
    out = tmp_path / "out"
    prepare_tokens([str(source)], tmp_path / "big", str(out), val_fraction=0.3, parallel=False)
    index = read_index(str(out))
    assert index["dtype"] == "uint32" and index["vocab_size"] == 70_002
    tokens = np.fromfile(out / "shard_00000.bin", dtype=np.uint32)
    assert tokens.tolist() == [3, 70_001, 4, 0, 5, 0, 66_002, 6, 0]
    data = load_dataset("tokens", {"path": str(out), "context_length": 1}, val_fraction=0.1, seed=0)
    assert int(torch.cat([data.train_inputs[:], data.val_inputs[:]]).max()) > 65_536


def test_shard_writer_never_splits_a_document(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, np.dtype(np.uint16), shard_tokens=10)
    writer.add(np.arange(6), np.array([3, 3]))
    writer.add(np.arange(25), np.array([4, 20, 1]))  # 20 > 10: alone in its shard
    shards = writer.finish()
    assert [(s["tokens"], s["documents"]) for s in shards] == [(10, 3), (20, 1), (1, 1)]
    assert np.load(tmp_path / shards[0]["offsets"]).tolist() == [0, 3, 6, 10]


def test_another_tokenizer_than_the_shards_is_a_spec_error(
    tmp_path: Path, prepared: Path, tok: Path
) -> None:
    other = tmp_path / "other"
    train_tokenizer(["licenses"], 280, other)
    with pytest.raises(SpecError) as caught:
        load_dataset(
            "tokens", {"path": str(prepared)}, val_fraction=0.1, seed=0, tokenizer=str(other)
        )
    assert caught.value.key == "data.tokenizer"
    assert str(tok) in str(caught.value) and str(other) in str(caught.value)


def test_a_path_without_prepared_tokens_is_a_spec_error(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(SpecError, match="no prepared tokens") as caught:
            load_dataset("tokens", {"path": str(path)}, val_fraction=0.1, seed=0)
        assert caught.value.key == "data.params.path"
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(SpecError, match="not JSON"):
        load_dataset("tokens", {"path": str(tmp_path)}, val_fraction=0.1, seed=0)


def test_a_context_longer_than_the_validation_split_is_a_spec_error(prepared: Path) -> None:
    with pytest.raises(SpecError, match="too few for one window") as caught:
        load_dataset(
            "tokens", {"path": str(prepared), "context_length": 5000}, val_fraction=0.1, seed=0
        )
    assert caught.value.key == "data.params.context_length"


def test_files_are_prepared_beside_the_run_folder_once(
    tmp_path: Path, tok: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = str(tmp_path / "runs" / "lm")
    text = tmp_path / "a.txt"
    text.write_text(inputs["txt"].read_text())
    params = {"files": [str(text)], "context_length": 8}
    data = load_dataset(
        "tokens", params, val_fraction=0.2, seed=1, tokenizer=str(tok), work_dir=run_dir
    )
    where = prepared_dir(run_dir)
    assert where == str(tmp_path / "runs" / ".tokens" / "lm")
    assert f"preparing 1 input(s) into token shards at {where}" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "lm").exists()  # the driver checks the run folder later
    index = Path(where) / "index.json"
    written = index.stat().st_mtime_ns
    again = load_dataset(
        "tokens", params, val_fraction=0.2, seed=1, tokenizer=str(tok), work_dir=run_dir
    )
    assert index.stat().st_mtime_ns == written and "preparing" not in capsys.readouterr().out
    assert torch.equal(again.train_inputs[:5], data.train_inputs[:5])
    text.write_text(text.read_text() + "\n\nA new paragraph.\n")  # changed: prepared again
    load_dataset("tokens", params, val_fraction=0.2, seed=1, tokenizer=str(tok), work_dir=run_dir)
    assert "preparing" in capsys.readouterr().out
    assert read_index(where)["documents"] == len(PARAGRAPHS) + 1
    with pytest.raises(SpecError) as caught:
        load_dataset("tokens", params, val_fraction=0.2, seed=1, work_dir=run_dir)
    assert caught.value.key == "data.tokenizer"


def test_a_job_names_path_or_files() -> None:
    for params in ({}, {"path": "x", "files": ["y"]}):
        with pytest.raises(SpecError, match="exactly one of path"):
            spec_from_dict(
                {
                    "name": "t",
                    "model": {"name": "gpt"},
                    "data": {"name": "tokens", "params": params},
                }
            )
