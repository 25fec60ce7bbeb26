"""Shared helpers for the benchmarks: machine description, results files, tables.

The scripts under ``benchmarks/`` import these (``from raylift.testing.benchmarks
import ...``); a test that runs a benchmark in-process loads its script with
``load_benchmark`` (nothing is added to ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from raylift.testing import REPO_ROOT

BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
RESULTS_DIR = BENCHMARKS_DIR / "results"


def memory_gib() -> float:
    """Total physical memory in GiB (0.0 when it cannot be read)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def load_average() -> float | None:
    """The 1-minute load average; other work on the machine skews every number."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def cpu_times() -> dict[str, float]:
    """Machine-wide CPU seconds so far from /proc/stat: busy, idle, steal (Linux only)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    busy = sum(fields[:8]) - idle - steal
    return {"busy": busy / tick, "idle": idle / tick, "steal": steal / tick}


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all cores busy over ``seconds``: other work here skews timings."""
    before = cpu_times()
    time.sleep(seconds)
    return busy_between(before, cpu_times())


def busy_between(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Fraction of all cores busy between two ``cpu_times()`` readings."""
    if not before or not after:
        return None
    busy = after["busy"] - before["busy"]
    total = busy + after["idle"] - before["idle"] + after["steal"] - before["steal"]
    return round(busy / total, 3) if total > 0 else None


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far) of every process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


class ForeignCpu:
    """CPU seconds used by processes outside this process tree while it runs (Linux).

    A background thread samples /proc every ``interval_s``; ``seconds`` is the total
    so far. Everything this process starts (Ray's daemons and workers, torchrun) is
    a descendant, so what is left is other people's work on the machine.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="foreign-cpu")

    def __enter__(self) -> ForeignCpu:
        if os.path.isdir("/proc/self/task"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _table(self) -> dict[int, tuple[int, float]]:
        return process_table()

    def _sample(self) -> None:
        me, previous = os.getpid(), self._table()
        while not self._stop.wait(self.interval_s):
            current = self._table()
            for pid, (_, cpu) in current.items():
                if pid in previous and not _descends_from(pid, me, current):
                    self.seconds += max(0.0, cpu - previous[pid][1])
            previous = current


def _descends_from(pid: int, ancestor: int, table: dict[int, tuple[int, float]]) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1 or pid not in table:
            return False
        pid = table[pid][0]
    return False


def gpu_name() -> str:
    """The first CUDA device's name, or "none"."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except Exception:  # no torch, or a broken driver: report no GPU
        pass
    return "none"


def package_version(name: str) -> str | None:
    """The installed version of the distribution ``name``; None when not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory, GPU, versions and platform, for the results file."""
    return {
        "cpu_cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "ray": package_version("ray"),
        "platform": platform.platform(),
        "load_average_1m_at_start": load_average(),
        "cpu_busy_at_start": cpu_busy_fraction(),
    }


def now_iso() -> str:
    """Now in UTC, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def median(values: Sequence[float]) -> float:
    """The median of ``values`` as a float."""
    return float(statistics.median(values))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats keep what ``fmt`` gave them."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1) -> str:
    """``value`` with thousands separators and ``digits`` decimals; "n/a" for None."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``; returns both paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def results(
    name: str,
    machine: dict[str, Any],
    config: dict[str, Any],
    runs: Any,
    summary: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The results JSON every benchmark writes (``gpu`` says "none" without one)."""
    machine["gpu"] = machine.get("gpu") or "none"
    return {
        "benchmark": name,
        "machine": machine,
        "date": now_iso(),
        "config": config,
        "runs": runs,
        "summary": summary,
        **extra,
    }


def publish(name: str, payload: dict[str, Any], markdown: str, *, write: bool = True) -> None:
    """Write the results (unless ``write`` is False) and print the markdown table."""
    if write:
        json_path, md_path = write_results(name, payload, markdown)
        log(f"wrote {json_path} and {md_path}")
    print(markdown)


def log(message: str) -> None:
    """Progress to stderr, so stdout holds only the final table."""
    print(message, file=sys.stderr, flush=True)


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module, to call its ``main`` in-process.

    Loaded by path under the name ``<name>`` (benchmarks/ is not a package).
    """
    path = BENCHMARKS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the benchmark {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up there
    spec.loader.exec_module(module)
    return module
