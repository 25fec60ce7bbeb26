"""Text generation for byte-level language models: sampling options, stop strings, streaming.

``stream_completion`` yields the completion as text pieces as tokens are
sampled. Pieces never split a UTF-8 character, and text that could be the
start of a stop string is held back until it is known not to be one, so a
streamed completion is exactly the non-streamed one cut into pieces.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from raylift.data.preprocessing import preprocess
from raylift.errors import RequestError


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens; checked by :func:`sampling_from`."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string) or "length" (max_tokens)


def sampling_from(options: dict[str, Any], *, max_tokens_limit: int) -> Sampling:
    """A :class:`Sampling` from request options (OpenAI names); bad values -> 400."""
    max_tokens = options.get("max_tokens", 16)
    if max_tokens is None:
        max_tokens = 16
    if not _is_int(max_tokens) or max_tokens < 1:
        raise RequestError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if max_tokens > max_tokens_limit:
        raise RequestError(
            f"max_tokens {max_tokens} is more than this model allows ({max_tokens_limit})"
        )
    temperature = options.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise RequestError(f"temperature must be a number from 0 to 2, got {temperature!r}")
    top_k = options.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise RequestError(f"top_k must be a positive integer, got {top_k!r}")
    top_p = options.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise RequestError(f"top_p must be a number in (0, 1], got {top_p!r}")
    seed = options.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise RequestError(f"seed must be a non-negative integer, got {seed!r}")
    stop = options.get("stop")
    stops: tuple[str, ...]
    if stop is None:
        stops = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise RequestError("stop must be a string or a list of at most 4 strings")
    if any(not s for s in stops):
        raise RequestError("stop strings must not be empty")
    return Sampling(max_tokens, float(temperature), top_k, top_p, seed, stops)


def stream_completion(
    model: torch.nn.Module, preprocessing: dict[str, Any], prompt: str, sampling: Sampling
) -> Iterator[str | Completion]:
    """Yield text pieces, then the final :class:`Completion` (text = all pieces)."""
    if not isinstance(prompt, str) or not prompt:
        raise RequestError("the prompt must be a non-empty string")
    try:
        ids = preprocess(preprocessing, prompt)  # (1, <= context) int64: the prompt's last bytes
    except Exception as exc:  # DataError: e.g. not encodable
        raise RequestError(f"prompt: {exc}") from None
    prompt_tokens = len(prompt.encode(preprocessing.get("encoding", "utf-8")))
    context = int(getattr(model, "context_length", ids.shape[1]))
    generator = torch.Generator()
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = _StopFilter(sampling.stop)
    pieces: list[str] = []
    finish = "length"
    produced = 0
    with torch.inference_mode():
        for produced in range(1, sampling.max_tokens + 1):  # noqa: B007 - used after
            logits = model(ids[:, -context:])[:, -1, :].float()
            next_id = _pick(logits, sampling, generator)
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
            text = decoder.decode(bytes([int(next_id)]))
            emit, stopped = stops.feed(text)
            if emit:
                pieces.append(emit)
                yield emit
            if stopped:
                finish = "stop"
                break
    if finish == "length":
        tail = stops.flush(decoder.decode(b"", final=True))
        if tail:
            pieces.append(tail)
            yield tail
    yield Completion("".join(pieces), prompt_tokens, produced, finish)


def complete(
    model: torch.nn.Module, preprocessing: dict[str, Any], prompt: str, sampling: Sampling
) -> Completion:
    """The whole completion at once."""
    final: Completion | None = None
    for item in stream_completion(model, preprocessing, prompt, sampling):
        if isinstance(item, Completion):
            final = item
    assert final is not None
    return final


def _pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always the top token).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= sampling.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).view(-1)


class _StopFilter:
    """Holds back text that may begin a stop string; cuts the text at the first stop."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was reached)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max(self._partial(s) for s in self.stops)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self, text: str) -> str:
        out, stopped = self.feed(text)
        if not stopped:
            out, self.pending = out + self.pending, ""
        return out

    def _partial(self, stop: str) -> int:
        """Length of the longest suffix of ``pending`` that is a proper prefix of ``stop``."""
        for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
            if stop.startswith(self.pending[-size:]):
                return size
        return 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
