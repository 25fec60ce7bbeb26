"""Training metrics exported through Ray's metrics agent (``ray.util.metrics``).

Ray serves them on each node's metrics export port with a ``ray_`` prefix
(``ray_raylift_train_step``, ``ray_raylift_train_restarts_total``...), where
Prometheus scrapes them; every series carries the tag ``run``.

``TrainTelemetry`` lives in the process that drives the run (``raylift train``,
a job's driver, a Tune trial's actor): it sees every report of every attempt and
outlives the workers, so restarts are counted once and a gauge does not vanish
when a worker group is replaced. Ray drops a gauge about 30 s after its last
update, so the latest values are set again every ``REFRESH_S`` while the run is
going; after the run they expire, which is how a dashboard tells a finished run
from a stalled one. ``GpuSampler`` runs in every worker on a GPU and publishes
that rank's GPU memory and utilisation.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

REFRESH_S = 5.0
# Gauge name (after "raylift_train_") -> (the progress event's key, description).
PROGRESS_GAUGES = {
    "step": ("step", "Optimizer steps completed."),
    "epoch": ("epoch", "Epoch in progress (1-based)."),
    "world_size": ("world_size", "Training workers in the current attempt."),
    "samples_per_s": ("samples_per_s", "Training throughput, samples per second."),
    "tokens_per_s": ("tokens_per_s", "Training throughput, tokens per second (language models)."),
    "mfu": ("mfu", "Model FLOPs utilisation on GPUs (language models): 0..1 of the bf16 peak."),
    "train_loss": ("train_loss", "Mean training loss over the last report window."),
    "checkpoint_seconds": ("checkpoint_s", "Seconds to write and seal the last checkpoint."),
    "checkpoint_bytes": ("checkpoint_bytes", "Size of the last checkpoint in bytes."),
}
# Gauges of the run's spec (set once by the driver, refreshed with the others).
SPEC_GAUGES = {
    "min_workers": "scaling.min_workers: fewest workers the run trains with.",
    "max_workers": "scaling.max_workers: most workers the run trains with.",
}


class TrainTelemetry:
    """The run's gauges and counters, fed with the progress events the driver receives."""

    def __init__(self, run: str, metric: str | None = None) -> None:
        from ray.util.metrics import Counter, Gauge

        tags = ("run",)
        self.tags = {"run": run}
        self.metric = metric
        self.restarts = Counter(
            "raylift_train_restarts",
            description="Restarts of the worker group from a checkpoint (failures and resizes).",
            tag_keys=tags,
        )
        self.resizes = Counter(
            "raylift_train_resizes",
            description="Restarts that changed the number of workers.",
            tag_keys=tags,
        )
        self.steps_lost = Counter(
            "raylift_train_steps_lost",
            description="Optimizer steps redone after restarts.",
            tag_keys=tags,
        )
        described = {name: text for name, (_, text) in PROGRESS_GAUGES.items()} | SPEC_GAUGES
        self.gauges = {
            name: Gauge(f"raylift_train_{name}", description=text, tag_keys=tags)
            for name, text in described.items()
        }
        self.val_metric = Gauge(
            "raylift_train_val_metric",
            description="The run's validation metric at the last evaluation.",
            tag_keys=("run", "metric"),
        )
        self.latest: dict[str, float] = {}
        self._lock = threading.Lock()

    def recovered(self, recovery: dict[str, Any]) -> None:
        """A recovery the driver saw: count it, the steps it lost, and whether it resized."""
        self.restarts.inc(1.0, tags=self.tags)
        if recovery.get("kind") == "resize":
            self.resizes.inc(1.0, tags=self.tags)
        if recovery["steps_lost"] > 0:  # Ray's Counter.inc refuses 0
            self.steps_lost.inc(float(recovery["steps_lost"]), tags=self.tags)

    def report(self, event: dict[str, Any]) -> None:
        """Take the numbers of one progress event and publish them."""
        with self._lock:
            for name, (key, _) in PROGRESS_GAUGES.items():
                if isinstance(event.get(key), int | float):
                    self.latest[name] = float(event[key])
            if self.metric and isinstance(event.get(self.metric), int | float):
                self.latest["val_metric"] = float(event[self.metric])
        self.publish()

    def publish(self) -> None:
        """Set every gauge to its latest value (again)."""
        with self._lock:
            latest = dict(self.latest)
        for name, value in latest.items():
            if name == "val_metric":
                self.val_metric.set(value, tags={**self.tags, "metric": str(self.metric)})
            else:
                self.gauges[name].set(value, tags=self.tags)

    def keep_fresh(self, stop: threading.Event, interval_s: float = REFRESH_S) -> threading.Thread:
        """A daemon thread that re-publishes every ``interval_s`` until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval_s):
                with contextlib.suppress(Exception):  # metrics must never stop a run
                    self.publish()

        thread = threading.Thread(target=loop, name="raylift-train-telemetry", daemon=True)
        thread.start()
        return thread


class GpuSampler:
    """One worker's GPU memory and utilisation, sampled every ``REFRESH_S`` (CUDA only)."""

    def __init__(self, run: str, rank: int, device: Any) -> None:
        from ray.util.metrics import Gauge

        self.device = device
        self.tags = {"run": run, "rank": str(rank)}
        tag_keys = ("run", "rank")
        self.memory = Gauge(
            "raylift_train_gpu_memory_bytes",
            description="GPU memory held by the worker's tensors (torch.cuda.memory_allocated).",
            tag_keys=tag_keys,
        )
        self.peak = Gauge(
            "raylift_train_gpu_memory_peak_bytes",
            description="Peak GPU memory held by the worker's tensors since it started.",
            tag_keys=tag_keys,
        )
        self.utilization = Gauge(
            "raylift_train_gpu_utilization",
            description="GPU utilisation in percent over the last sample period (NVML).",
            tag_keys=tag_keys,
        )

    def sample(self) -> None:
        import torch

        self.memory.set(float(torch.cuda.memory_allocated(self.device)), tags=self.tags)
        self.peak.set(float(torch.cuda.max_memory_allocated(self.device)), tags=self.tags)
        with contextlib.suppress(Exception):  # NVML (pynvml) may be missing
            self.utilization.set(float(torch.cuda.utilization(self.device)), tags=self.tags)

    def start(self) -> threading.Thread:
        def loop() -> None:
            while True:  # a daemon: it ends with the worker process
                time.sleep(REFRESH_S)
                with contextlib.suppress(Exception):
                    self.sample()

        thread = threading.Thread(target=loop, name="raylift-gpu-sampler", daemon=True)
        thread.start()
        return thread


def start_gpu_sampler(run: str, rank: int, device: Any) -> GpuSampler | None:
    """Sample this worker's GPU in the background when it trains on one."""
    if getattr(device, "type", None) != "cuda":
        return None
    sampler = GpuSampler(run, rank, device)
    sampler.sample()
    sampler.start()
    return sampler


def peak_memory(device: Any) -> dict[str, Any]:
    """This worker's peak memory so far: CUDA max allocated on a GPU, else max RSS."""
    import torch

    if getattr(device, "type", None) == "cuda":
        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
            "memory_kind": "cuda_allocated",
        }
    import resource

    # Linux reports ru_maxrss in KiB.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_memory_bytes": int(rss), "memory_kind": "cpu_rss"}


def memory_summary(event: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run record's peak memory per worker, updated from one progress event.

    ``event["peak_memory_per_worker"]``: every rank's peak in that report round;
    ``before``: the summary so far (its ``max`` is kept across attempts).
    """
    peaks = event.get("peak_memory_per_worker")
    if not peaks:
        return before
    return {
        "kind": event.get("memory_kind"),
        "per_worker": [int(p) for p in peaks],
        "max": max(max(int(p) for p in peaks), int((before or {}).get("max", 0))),
    }
