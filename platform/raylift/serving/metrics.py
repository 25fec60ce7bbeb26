"""Serving metrics through ``ray.serve.metrics`` (application/deployment/replica labels added).

Ray's metrics agent exports them with a ``ray_`` prefix (counters get
``_total``): ``ray_raylift_serve_requests_total{model, version, code}``,
``ray_raylift_serve_request_latency_ms`` (whole request, at the ingress),
``..._queue_latency_ms`` (waiting for a batch), ``..._model_latency_ms`` (the
model call), ``..._batch_size``, ``ray_raylift_serve_tokens_generated_total``,
and the gauges ``ray_raylift_serve_model_load_seconds`` and
``ray_raylift_serve_quantized``, which are re-set every few seconds because Ray
drops a gauge that is not set again.
"""

from __future__ import annotations

import threading
from typing import Any

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
GAUGE_REFRESH_S = 5.0
MODEL_TAGS = ("model", "version")


class IngressMetrics:
    """Per request, at the HTTP ingress."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter(
            "raylift_serve_requests",
            description="HTTP requests by model, version and status code.",
            tag_keys=(*MODEL_TAGS, "code"),
        )
        self.latency = metrics.Histogram(
            "raylift_serve_request_latency_ms",
            description="Whole-request latency at the ingress (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=MODEL_TAGS,
        )

    def observe(self, model: str, version: str, code: int, seconds: float) -> None:
        tags = {"model": model or "-", "version": version or "-"}
        self.requests.inc(tags={**tags, "code": str(code)})
        self.latency.observe(seconds * 1000.0, tags=tags)


class ModelMetrics:
    """Per batch and per model, in a model replica; gauges refreshed in a thread."""

    def __init__(self, model: str, version: str, *, quantized: bool, load_s: float) -> None:
        from ray.serve import metrics

        self.tags = {"model": model, "version": version}
        self.queue = metrics.Histogram(
            "raylift_serve_queue_latency_ms",
            description="Time a request waited in the replica for its batch (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=MODEL_TAGS,
        )
        self.model_call = metrics.Histogram(
            "raylift_serve_model_latency_ms",
            description="Model call per batch or generation (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=MODEL_TAGS,
        )
        self.batch_size = metrics.Histogram(
            "raylift_serve_batch_size",
            description="Rows per model call.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=MODEL_TAGS,
        )
        self.tokens = metrics.Counter(
            "raylift_serve_tokens_generated",
            description="Tokens generated.",
            tag_keys=MODEL_TAGS,
        )
        self._load = metrics.Gauge(
            "raylift_serve_model_load_seconds",
            description="Time to load (and quantize) the model in this replica.",
            tag_keys=MODEL_TAGS,
        )
        self._quantized = metrics.Gauge(
            "raylift_serve_quantized",
            description="1 when the replica serves an int8 model, else 0.",
            tag_keys=MODEL_TAGS,
        )
        self._gauges: list[tuple[Any, float]] = [
            (self._load, load_s),
            (self._quantized, 1.0 if quantized else 0.0),
        ]
        self._stop = threading.Event()
        self._refresh()
        threading.Thread(target=self._refresh_loop, name="gauges", daemon=True).start()

    def observe_batch(self, rows: int, queue_s: list[float], call_s: float) -> None:
        self.batch_size.observe(rows, tags=self.tags)
        self.model_call.observe(call_s * 1000.0, tags=self.tags)
        for wait in queue_s:
            self.queue.observe(wait * 1000.0, tags=self.tags)

    def observe_generation(self, tokens: int, call_s: float) -> None:
        self.model_call.observe(call_s * 1000.0, tags=self.tags)
        if tokens:
            self.tokens.inc(tokens, tags=self.tags)

    def _refresh(self) -> None:
        for gauge, value in self._gauges:
            gauge.set(value, tags=self.tags)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(GAUGE_REFRESH_S):
            self._refresh()

    def close(self) -> None:
        self._stop.set()
