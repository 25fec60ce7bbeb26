"""One served model (one spec entry): a Ray Serve deployment the ingress calls.

The replica loads the export weights-only (``load_export``), quantizes it when
the spec says ``int8`` (refusing when the accuracy gate fails), and answers:

- ``classify``: raw inputs -> (probabilities, labels). Each request is checked
  and preprocessed on its own, then requests that arrive together run as one
  batch (``@serve.batch``, sized in rows, not requests), so one bad request
  never fails its neighbours. A request that fills a batch by itself runs alone.
- ``complete`` / ``complete_stream``: text generation for language models
  (one request at a time: prompts of different lengths do not batch).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from ray import serve

from raylift.errors import DataError, RequestError
from raylift.serving.generate import Completion, complete, sampling_from, stream_completion
from raylift.serving.signature import model_metadata, signature_of


def _rows(items: list[tuple[torch.Tensor, float]]) -> int:
    """A batch's size in rows (a request may carry many), for ``@serve.batch``."""
    return sum(len(x) for x, _ in items)


class ModelServer:
    """Deployment body (wrapped by ``serve.deployment`` in ``app.py``)."""

    def __init__(self, entry: dict[str, Any], path: str) -> None:
        from raylift.serving.metrics import ModelMetrics
        from raylift.specs.serve import ServedModel

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.entry = ServedModel.model_validate(entry)
        started = time.perf_counter()
        self.export = _load(path)
        self.model = self.export.model
        self.quantized = self.entry.quantize == "int8"
        self.gate: dict[str, Any] | None = None
        if self.quantized:
            from dataclasses import asdict

            from raylift.serving.quantize import check_int8

            self.model, result = check_int8(
                self.export, self.entry.max_accuracy_drop_pts, model_name=self.entry.name
            )
            self.gate = asdict(result)
        self.model.eval()
        self.load_s = time.perf_counter() - started
        self.signature = signature_of(self.export.manifest)
        self.preprocessing = self.export.preprocessing
        batching = self.entry.batching
        self._classify_batch.set_max_batch_size(batching.max_batch_size)
        self._classify_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        self.metrics = ModelMetrics(
            self.entry.name, self.entry.version, quantized=self.quantized, load_s=self.load_s
        )

    # -- what the ingress asks ------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        meta = model_metadata(
            self.entry.name, self.entry.version, self.export.manifest, quantized=self.quantized
        )
        meta["parameters"]["load_seconds"] = round(self.load_s, 3)
        if self.gate is not None:
            meta["parameters"]["int8_gate"] = self.gate
        return meta

    def ready(self) -> bool:
        return True

    async def classify(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray] | dict[str, str]:
        """Probabilities and labels for a batch of raw inputs.

        Bad input comes back as ``{"error": message}`` (a 400 at the ingress), not
        raised: a raised exception would be logged with its traceback by Serve.
        """
        if self.signature.generative:
            return {"error": f"model {self.entry.name!r} generates text; send text_input"}
        try:
            x = _preprocess(self.preprocessing, raw)
        except DataError as exc:
            return {"error": f"input 'input': {exc}"}
        batching = self.entry.batching
        if batching.enabled and len(x) < batching.max_batch_size:
            probs = await self._classify_batch((x, time.perf_counter()))
        else:
            probs = await asyncio.to_thread(self._forward_timed, [x], [time.perf_counter()])
            probs = probs[0]
        return probs, probs.argmax(axis=1).astype(np.int64)

    def complete(self, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
        """One completion (the V2 text_output and the OpenAI non-streaming response)."""
        sampling = self._sampling(options)
        started = time.perf_counter()
        result = complete(self.model, self.preprocessing, prompt, sampling)
        self.metrics.observe_generation(result.completion_tokens, time.perf_counter() - started)
        return _completion_dict(result)

    def complete_stream(self, prompt: str, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Text pieces as ``{"text": ...}``, then the final completion (``"done": True``)."""
        sampling = self._sampling(options)
        started = time.perf_counter()
        for item in stream_completion(self.model, self.preprocessing, prompt, sampling):
            if isinstance(item, Completion):
                self.metrics.observe_generation(
                    item.completion_tokens, time.perf_counter() - started
                )
                yield {**_completion_dict(item), "done": True}
            else:
                yield {"text": item}

    # -- internals ------------------------------------------------------------

    def _sampling(self, options: dict[str, Any]) -> Any:
        if not self.signature.generative:
            raise RequestError(f"model {self.entry.name!r} is a classifier; it does not generate")
        return sampling_from(options, max_tokens_limit=self.entry.limits.max_tokens)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_rows)
    async def _classify_batch(self, items: list[tuple[torch.Tensor, float]]) -> list[np.ndarray]:
        """Requests that arrived together, as one model call (limits set per replica)."""
        inputs = [x for x, _ in items]
        arrived = [t for _, t in items]
        return await asyncio.to_thread(self._forward_timed, inputs, arrived)

    def _forward_timed(self, inputs: list[torch.Tensor], arrived: list[float]) -> list[np.ndarray]:
        started = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(torch.cat(inputs)).float()
            probs = torch.softmax(logits, dim=-1).numpy()
        ended = time.perf_counter()
        rows = sum(len(x) for x in inputs)
        self.metrics.observe_batch(rows, [started - t for t in arrived], ended - started)
        out, start = [], 0
        for x in inputs:
            out.append(probs[start : start + len(x)])
            start += len(x)
        return out

    def __del__(self) -> None:
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.close()


def _preprocess(preprocessing: dict[str, Any], raw: np.ndarray) -> torch.Tensor:
    from raylift.data.preprocessing import preprocess

    return preprocess(preprocessing, torch.from_numpy(np.ascontiguousarray(raw)))


def _load(path: str) -> Any:
    from raylift.artifacts.export import local_copy
    from raylift.models.exported import load_export

    copy = local_copy(path)
    local = copy.__enter__()  # kept for the replica's lifetime when downloaded
    return load_export(local)


def _completion_dict(result: Completion) -> dict[str, Any]:
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }
