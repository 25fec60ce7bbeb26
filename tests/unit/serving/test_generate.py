"""Text generation for serving: sampling options, stop strings, streamed completions (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raylift.errors import RequestError
from raylift.models.exported import load_export
from raylift.serving.generate import Completion, _StopFilter, sampling_from, stream_completion
from raylift.testing.exports import gpt_spec, make_export


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"max_tokens": 65}, "max_tokens 65 is more than this model allows (64)"),
        ({"max_tokens": True}, "max_tokens must be a positive integer"),
        ({"temperature": 3}, "temperature must be a number from 0 to 2"),
        ({"top_p": 0}, "top_p must be a number in (0, 1]"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"stop": ["a"] * 5}, "at most 4 strings"),
        ({"stop": [""]}, "must not be empty"),
    ],
)
def test_bad_sampling_options_are_client_errors(options: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sampling_from(options, max_tokens_limit=64)


def test_sampling_defaults_and_nulls() -> None:
    sampling = sampling_from(
        {"max_tokens": None, "temperature": None, "stop": "\n"}, max_tokens_limit=64
    )
    assert (sampling.max_tokens, sampling.temperature, sampling.stop) == (16, 1.0, ("\n",))


@pytest.mark.parametrize(
    ("pieces", "stops", "emitted", "stopped"),
    [
        (["ab", "c\n", "d"], ("\n",), "abc", True),
        (["a", "EN", "D", "x"], ("END",), "a", True),  # a stop split across pieces
        (["a", "EN", "x"], ("END",), "aENx", False),  # a false start is released
        (["hello"], (), "hello", False),
    ],
)
def test_stop_strings_cut_the_text_and_hold_back_partial_matches(
    pieces: list[str], stops: tuple[str, ...], emitted: str, stopped: bool
) -> None:
    stop_filter = _StopFilter(stops)
    out, done = "", False
    for piece in pieces:
        text, done = stop_filter.feed(piece)
        out += text
        if done:
            break
    if not done:
        out += stop_filter.flush("")
    assert (out, done) == (emitted, stopped)


def test_streamed_pieces_make_the_whole_completion(tmp_path: Path) -> None:
    export = load_export(str(make_export(tmp_path / "gpt", gpt_spec(), steps=20)))
    sampling = sampling_from({"max_tokens": 20, "seed": 3, "top_k": 20}, max_tokens_limit=64)
    items = list(stream_completion(export.model, export.preprocessing, "The ", sampling))
    final = items[-1]
    assert isinstance(final, Completion) and final.completion_tokens == 20
    assert "".join(items[:-1]) == final.text and final.prompt_tokens == 4
    again = list(stream_completion(export.model, export.preprocessing, "The ", sampling))[-1]
    assert again.text == final.text  # the seed makes it repeatable
    greedy = sampling_from({"max_tokens": 5, "temperature": 0}, max_tokens_limit=64)
    first = list(stream_completion(export.model, export.preprocessing, "The ", greedy))[-1]
    ids = torch.tensor([list(b"The ")])
    expected = export.model.generate(ids, 5, temperature=0)[0, 4:].tolist()
    assert first.text == bytes(expected).decode("utf-8", errors="replace")
