"""Recovery: raylift (Ray Train elastic) vs elastic ``torchrun``, losing and regaining a node.

The same job on both sides: the raylift ``mlp`` (hidden ``[32]``) on ``digits``,
up to 2 data-parallel workers on gloo (at least 1), 32 examples per worker, the
global batch kept at 64 when a worker is missing, a checkpoint every
``--checkpoint-every`` steps, a progress line every step. Each repeat, on each side:

1. **node loss**: with 2 workers training, at the step half-way between two
   checkpoints (``--loss-offset``), a whole worker "node" is killed with SIGKILL:
   raylift: ``Cluster.remove_node(node, allow_graceful=False)`` on a
   ``ray.cluster_utils.Cluster`` (a 0-CPU head and two 1-CPU worker nodes on this
   machine); torchrun: one of two ``torchrun --nnodes=1:2`` agents and its worker.
   ``resume_s``: seconds from the kill to the first training step after the
   restart (on 1 worker); ``steps_lost``: the last step seen before the kill minus
   the step the restart resumed from.
2. **regrow**: ``--dwell`` seconds later the node comes back (``Cluster.add_node``;
   a new ``torchrun`` agent with the same rendezvous). ``grow_s``: seconds from
   starting the node to the first step on 2 workers again.
3. **process kill** (``--kinds node,process``): with 2 workers training again, at
   the same point between checkpoints, one worker process is killed with SIGKILL
   (raylift: a ``ray::RayTrainWorker`` process; torchrun: the newest agent's
   worker). ``kill_resume_s`` and ``kill_steps_lost`` as above.

raylift runs in a child process of this script (its own cluster under a private
``RAY_TMPDIR``, torn down after each repeat); torchrun agents are children of this
script. Writes ``results/recovery.json`` and ``.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raylift.ports import free_port
from raylift.testing.benchmarks import (
    ForeignCpu,
    busy_between,
    cpu_times,
    fmt,
    load_average,
    log,
    machine_info,
    markdown_table,
    median,
    now_iso,
    publish,
)

NAME = "recovery"
RESUME_GOAL_S = 15.0
DISTURBED_CORES = 0.1  # as in train_overhead.py
HERE = Path(__file__).resolve().parent
TORCHRUN_SCRIPT = HERE / "torchrun_elastic.py"
HIDDEN = [32]
BATCH = 32
MAX_WORKERS = 2
LR = 0.005
# Elastic torchrun, tuned to be quick (its defaults: last_call_timeout 30 s, keep-alive
# every 5 s with 3 misses allowed, monitor_interval 0.1 s, join_timeout 600 s).
TORCHRUN_RDZV_CONF = (
    "join_timeout=60,last_call_timeout=1,keep_alive_interval=1,keep_alive_max_attempt=3"
)
TORCHRUN_MONITOR_S = 0.5
# torch 2.13 shares the rendezvous TCPStore with the workers by default; then an
# agent that was rank 0 alone and is rank 0 again when a node joins skips
# publishing MASTER_ADDR for the new round, the joining agent waits for it, and
# both time out after 60 s. The documented opt-out avoids that.
TORCHRUN_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "OMP_NUM_THREADS": "1"}
AGENT_MARKS = {
    "Worker group FAILED": "failure handled",
    "new nodes from group_rank": "membership change seen",
    "Rendezvous complete for workers": "rendezvous complete",
    "Starting worker group": "worker group starting",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each side (default 3)")
    parser.add_argument("--sides", default="raylift,torchrun", help="comma-separated")
    parser.add_argument(
        "--kinds", default="node,process", help="losses: node (+ regrow), process; comma-separated"
    )
    parser.add_argument("--checkpoint-every", type=int, default=20, help="steps (default 20)")
    parser.add_argument(
        "--loss-offset",
        type=int,
        default=None,
        help="kill at a step this far past a checkpoint (default: half the interval)",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=40, help="train at least this many steps first"
    )
    parser.add_argument(
        "--dwell", type=float, default=5.0, help="seconds on 1 worker before the node returns"
    )
    parser.add_argument(
        "--resize-check", type=float, default=2.0, help="raylift scaling.resize_check_interval_s"
    )
    parser.add_argument(
        "--torchrun-step-time",
        type=float,
        default=0.5,
        help="torchrun's pace: at least this many seconds a step (raylift's step at "
        "log_every_steps 1 is ~0.5 s, the report barrier; see README)",
    )
    parser.add_argument("--max-restarts", type=int, default=5, help="both sides' failure budget")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds for any one wait")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the 1-minute load average to drop below 1",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave results/ alone"
    )
    parser.add_argument("--json-out", help="also write the whole JSON payload to this file")
    parser.add_argument(
        "--graceful",
        action="store_true",
        help="raylift: remove the node gracefully (Ray is told at once) instead of SIGKILL",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep raylift's Ray session folder (debugging)"
    )
    parser.add_argument("--raylift-child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loss_offset is None:
        args.loss_offset = args.checkpoint_every // 2
    return args


# --------------------------------------------------------------------------- processes


def _proc_table() -> dict[int, int]:
    """pid -> parent pid, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    table[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def descendants(pid: int) -> list[int]:
    table = _proc_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_matching(fragment: str) -> int:
    """SIGKILL every process whose command line contains ``fragment`` (a private path)."""
    me = os.getpid()
    pids = [pid for pid in _proc_table() if pid != me and fragment in cmdline(pid)]
    kill_pids(pids)
    return len(pids)


class StepLog:
    """Thread-safe list of step events, each with its wall time ``t``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def add(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.events)

    def last(self) -> dict[str, Any] | None:
        with self._cond:
            return self.events[-1] if self.events else None

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        *,
        since: int = 0,
        stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any] | None:
        """The first event from index ``since`` on that matches; None on timeout/stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or stop():
                    return None
                self._cond.wait(timeout=min(left, 0.5))


class Failed(RuntimeError):
    """A wait timed out: the rest of this side's repeat cannot be measured."""


def loss_step(after: int, interval: int, offset: int) -> int:
    """The first step > ``after`` that lies ``offset`` steps past a checkpoint."""
    step = after + 1
    while step % interval != offset:
        step += 1
    return step


def step_period(events: list[dict[str, Any]], world: int) -> float | None:
    """Median seconds between consecutive steps at ``world`` workers."""
    gaps = [
        b["t"] - a["t"]
        for a, b in itertools.pairwise(events)
        if a["world"] == b["world"] == world and b["step"] == a["step"] + 1
    ]
    return round(median(gaps), 3) if gaps else None


def run_scenario(
    args: argparse.Namespace,
    steps: StepLog,
    *,
    lose_node: Callable[[], dict[str, Any]],
    add_node: Callable[[], dict[str, Any]],
    kill_process: Callable[[], dict[str, Any]],
    alive: Callable[[], bool],
) -> dict[str, Any]:
    """The loss / regrow / process-kill sequence, the same for both sides.

    ``steps`` events have ``t`` (wall time of the step), ``step``, ``world``,
    ``attempt`` (changes when the workers restart) and, after a restart,
    ``resumed_from``.
    """
    interval, offset, timeout = args.checkpoint_every, args.loss_offset, args.timeout
    kinds = set(args.kinds.split(","))
    result: dict[str, Any] = {}
    stop = lambda: not alive()  # noqa: E731

    def need(event: dict[str, Any] | None, what: str) -> dict[str, Any]:
        if event is None:
            last = steps.last()
            raise Failed(f"no {what} within {timeout:.0f} s (last step seen: {last})")
        return event

    def lose(kind: str, kill: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Kill at the next step ``offset`` past a checkpoint; measure the restart."""
        since = len(steps)
        first = need(
            steps.wait_for(lambda e: e["world"] == MAX_WORKERS, timeout, since=since, stop=stop),
            f"{MAX_WORKERS}-worker step",
        )
        start = steps.events.index(first, since)
        # A few steps in the new attempt first, so the kill is not part of its start.
        target = loss_step(max(first["step"] + 2, args.warmup_steps - 1), interval, offset)
        seen = need(
            steps.wait_for(
                lambda e: e["world"] == MAX_WORKERS and e["step"] >= target,
                timeout,
                since=start,
                stop=stop,
            ),
            f"step {target} on {MAX_WORKERS} workers",
        )
        before = len(steps)
        last = steps.last() or seen
        cpu_before = cpu_times()
        lost_at = time.time()
        info = kill()
        resumed = need(
            steps.wait_for(
                lambda e: e["attempt"] != last["attempt"], timeout, since=before, stop=stop
            ),
            f"step after the {kind} loss",
        )
        cpu_after = cpu_times()
        out = {
            "at": round(lost_at, 3),
            "first_step_at": round(resumed["t"], 3),
            "killed_at_step": last["step"],
            "resume_s": round(resumed["t"] - lost_at, 2),
            "resume_reported_s": round(resumed.get("reported", resumed["t"]) - lost_at, 2),
            "resumed_from_step": resumed.get("resumed_from"),
            # >= 0: a checkpoint can land after the last step the driver saw
            "steps_lost": None
            if resumed.get("resumed_from") is None
            else max(0, last["step"] - int(resumed["resumed_from"])),
            "world_after": resumed["world"],
            "worker_startup": resumed.get("startup") or None,
            "step_s": step_period(steps.events[start:before], MAX_WORKERS),
            # The machine's CPUs in use from the loss to the step after it: near 1.0
            # means the restart is CPU-bound (process start-up and imports).
            "cpu_busy": busy_between(cpu_before, cpu_after),
            **info,
        }
        log(
            f"  {kind} loss at step {out['killed_at_step']}: first step after "
            f"{out['resume_s']:.1f} s on {out['world_after']} worker(s), resumed from "
            f"{out['resumed_from_step']} ({out['steps_lost']} steps lost)"
        )
        return out

    if "node" in kinds:
        result["node"] = lose("node", lose_node)
        # On 1 worker for a while, then the node comes back.
        time.sleep(args.dwell)
        before = len(steps)
        last = steps.last() or {}
        added_at = time.time()
        info = add_node()
        grown = need(
            steps.wait_for(lambda e: e["world"] == MAX_WORKERS, timeout, since=before, stop=stop),
            "step on 2 workers after the node returned",
        )
        previous = steps.events[steps.events.index(grown) - 1]
        result["grow"] = {
            "at": round(added_at, 3),
            "first_step_at": round(grown["t"], 3),
            "grow_s": round(grown["t"] - added_at, 2),
            "grow_reported_s": round(grown.get("reported", grown["t"]) - added_at, 2),
            "resumed_from_step": grown.get("resumed_from"),
            "steps_lost": None
            if grown.get("resumed_from") is None
            else max(0, previous["step"] - int(grown["resumed_from"])),
            "steps_while_growing": previous["step"] - last.get("step", previous["step"]),
            "worker_startup": grown.get("startup") or None,
            **info,
        }
        log(
            f"  regrow: first step on {MAX_WORKERS} workers {result['grow']['grow_s']:.1f} s "
            f"after the node started ({result['grow']['steps_lost']} steps lost to the resize)"
        )
    if "process" in kinds:
        result["process"] = lose("process", kill_process)
    return result


# --------------------------------------------------------------------------- raylift


def raylift_job(args: argparse.Namespace, storage: str) -> dict[str, Any]:
    """The elastic job: the shape of tests/integration/test_elastic.py's elastic_spec."""
    return {
        "name": "bench-recovery",
        "model": {"name": "mlp", "params": {"hidden_sizes": HIDDEN}},
        "data": {"name": "digits", "batch_size": BATCH, "val_fraction": 0.2, "seed": 0},
        "train": {
            "epochs": None,
            "max_steps": 100_000,  # never reached: the cluster is torn down after measuring
            "lr": LR,
            "schedule": "constant",
            "log_every_steps": 1,
            "checkpoint_every_steps": args.checkpoint_every,
            "checkpoint_every_epochs": None,
            "keep_checkpoints": 2,
        },
        "scaling": {
            "min_workers": 1,
            "max_workers": MAX_WORKERS,
            "resize_check_interval_s": args.resize_check,
        },
        "failure": {"max_failures": args.max_restarts},
        "storage": {"path": storage},
    }


CONTROLLER_MARKS = {
    "[FailurePolicy]": "failure handled",
    "Detected changes in the cluster resources": "resize decided",
    "Attempting to start training worker group": "worker group starting",
    "Started training worker group": "worker group started",
    "worker group startup timed out": "worker group start timed out",
}


def controller_timeline(root: str) -> list[list[Any]]:
    """[wall time, event] from Ray Train's controller log: what a restart spent its time on."""
    import glob

    timeline = []
    pattern = os.path.join(root, "ray", "session_*", "logs", "train", "ray-train-sys-controller-*")
    for path in sorted(set(glob.glob(pattern))):
        with contextlib.suppress(OSError), open(path) as handle:
            for line in handle:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    record = json.loads(line)
                    message = record["message"]
                    label = next((v for k, v in CONTROLLER_MARKS.items() if k in message), None)
                    if label is None:
                        continue
                    stamp, millis = record["asctime"].split(",")
                    wall = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
                    timeline.append([round(wall + int(millis) / 1000, 3), label])
    return sorted(timeline)


def breakdown(timeline: list[list[Any]], since: float, until: float) -> dict[str, float]:
    """Seconds from ``since`` to the controller's first marks in [since, until]."""
    out: dict[str, float] = {}
    for wall, label in timeline:
        key = label.replace(" ", "_") + "_s"
        if since <= wall <= until and key not in out:
            out[key] = round(wall - since, 2)
    return out


def raylift_child(args: argparse.Namespace) -> None:
    """One raylift repeat, in its own process: cluster, run, losses, teardown."""
    from raylift.ops.connect import NODE_HEALTH_CHECK, WORKER_ENV_DEFAULTS

    root = tempfile.mkdtemp(prefix="rl-rec-", dir="/tmp")  # short: Unix socket paths
    # Before the cluster starts: its raylets (and so the workers) inherit them.
    for key, value in WORKER_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["RAY_TMPDIR"] = root
    os.environ.pop("RAY_ADDRESS", None)
    out: dict[str, Any] = {
        "env": {k: os.environ[k] for k in WORKER_ENV_DEFAULTS},
        "system_config": NODE_HEALTH_CHECK,
    }
    cluster = None
    try:
        from ray.cluster_utils import Cluster

        from raylift.ops.connect import connect
        from raylift.ray_compat.session import disable_auto_connect
        from raylift.specs import spec_from_dict
        from raylift.training.driver import run_training

        # The training thread outlives the measurements; it must never start or
        # join another Ray on this host once this cluster is gone.
        disable_auto_connect()
        started = time.perf_counter()
        # raylift's GCS node health checks (a dead node is noticed in ~3-5 s, not 15-25 s).
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "_system_config": NODE_HEALTH_CHECK,
            },
        )
        for _ in range(MAX_WORKERS):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        connect(cluster.address, dashboard=False)
        out["cluster_start_s"] = round(time.perf_counter() - started, 2)

        steps = StepLog()
        outcome: dict[str, Any] = {}

        attempt = {"n": 0, "last": None}

        def on_event(event: dict[str, Any]) -> None:
            # A new worker group: its step counter went back, its loop clock restarted,
            # or it resumed from another checkpoint. (raylift's ``restarts`` alone does
            # not tell: it is the checkpoint's count + 1, so two attempts that resume
            # from the same checkpoint report the same number.)
            key = (event.get("restarts"), event.get("resumed_from_step"))
            step, clock = int(event["step"]), float(event.get("train_time_s", 0.0))
            last = attempt["last"]
            if last is not None and (key != last[0] or step <= last[1] or clock < last[2]):
                attempt["n"] += 1
            attempt["last"] = (key, step, clock)
            steps.add(
                {
                    # When rank 0 finished the step (its clock; the same machine's), as
                    # torchrun's side is timed; "reported" is when the driver heard of it.
                    "t": float(event.get("step_end_time") or time.time()),
                    "reported": time.time(),
                    "step": step,
                    "world": int(event["world_size"]),
                    "attempt": attempt["n"],
                    "restarts": event.get("restarts"),
                    "resumed_from": event.get("resumed_from_step"),
                    "recovery": event.get("recovery"),
                    "startup": {
                        k: round(float(v), 2) for k, v in event.items() if k.startswith("startup_")
                    },
                }
            )

        spec = spec_from_dict(raylift_job(args, os.path.join(root, "runs")))

        def train() -> None:
            try:
                run_training(spec, on_event=on_event)
            except BaseException as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]
            finally:
                outcome["done"] = True

        threading.Thread(target=train, daemon=True, name="raylift-run").start()

        def worker_pids() -> dict[int, Any]:
            """RayTrainWorker pid -> the worker node whose raylet started it."""
            raylets = {n.all_processes["raylet"][0].process.pid: n for n in cluster.worker_nodes}
            table = _proc_table()
            return {
                pid: raylets[ppid]
                for pid, ppid in table.items()
                if ppid in raylets and cmdline(pid).startswith("ray::RayTrainWorker")
            }

        def lose_node() -> dict[str, Any]:
            hosts = worker_pids()
            if not hosts:
                raise Failed("no RayTrainWorker process found on a worker node")
            victim = next(iter(hosts.values()))
            begun = time.perf_counter()
            cluster.remove_node(victim, allow_graceful=args.graceful)
            return {"remove_node_s": round(time.perf_counter() - begun, 2)}

        def add_node() -> dict[str, Any]:
            begun = time.perf_counter()
            cluster.add_node(num_cpus=1)
            return {"add_node_s": round(time.perf_counter() - begun, 2)}

        def kill_process() -> dict[str, Any]:
            hosts = worker_pids()
            if not hosts:
                raise Failed("no RayTrainWorker process found on a worker node")
            newest = max(
                cluster.worker_nodes, key=lambda n: n.all_processes["raylet"][0].process.pid
            )
            pid = next((p for p, n in hosts.items() if n is newest), next(iter(hosts)))
            kill_pids([pid])
            return {"killed_pid": pid}

        try:
            out.update(
                run_scenario(
                    args,
                    steps,
                    lose_node=lose_node,
                    add_node=add_node,
                    kill_process=kill_process,
                    alive=lambda: not outcome.get("done"),
                )
            )
        except Failed as exc:
            out["error"] = str(exc)
        if outcome.get("error"):
            out["run_error"] = outcome["error"]
        timeline = controller_timeline(root)
        for part in ("node", "grow", "process"):
            if isinstance(out.get(part), dict) and "at" in out[part]:
                begun, ended = out[part]["at"], out[part]["first_step_at"]
                out[part]["controller"] = breakdown(timeline, begun, ended)
        recoveries = [e["recovery"] for e in steps.events if e.get("recovery")]
        out["raylift_recoveries"] = recoveries
        out["events"] = len(steps)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        with open(args.raylift_child, "w") as handle:
            json.dump(out, handle)
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()
        kill_matching(root)
        if args.keep_logs:
            log(f"  kept Ray's session folder under {root}")
        else:
            for _ in range(3):  # a dying raylet may still be writing its logs
                shutil.rmtree(root, ignore_errors=True)
                if not os.path.exists(root):
                    break
                time.sleep(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the training thread may still be blocked in Ray


def run_raylift(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rl-rec-out-") as tmp:
        out_path = os.path.join(tmp, "result.json")
        command = [sys.executable, __file__, "--raylift-child", out_path, *sys.argv[1:]]
        begun = time.perf_counter()
        proc = subprocess.Popen(
            command,
            start_new_session=True,
            stdout=subprocess.DEVNULL,  # Ray's dying raylets print their state dumps there
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        tail: list[str] = []

        def relay() -> None:
            # Our own progress lines (indented) go on; Ray's chatter is kept for errors.
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("  ") and not line[2:3].isspace():
                    sys.stderr.write(line)
                tail.append(line)
                del tail[:-40]

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=8 * args.timeout)
        except subprocess.TimeoutExpired:
            kill_pids([proc.pid, *descendants(proc.pid)])
            proc.wait(timeout=30)
        finally:
            kill_pids(descendants(proc.pid))  # anything the child left behind
        wall_s = time.perf_counter() - begun
        reader.join(timeout=5)
        if not os.path.exists(out_path):
            result = {"error": f"raylift child exited {proc.returncode} without a result"}
        else:
            with open(out_path) as handle:
                result = json.load(handle)
        if result.get("error"):
            result["stderr_tail"] = "".join(tail)[-3000:]
    result["wall_s"] = round(wall_s, 1)
    return result


# --------------------------------------------------------------------------- torchrun


class Agent:
    """One ``torchrun`` agent ("node") with one worker; step lines go to ``steps``."""

    def __init__(
        self, name: str, command: list[str], steps: StepLog, log_dir: str, start_time: float
    ) -> None:
        self.name = name
        env = {**os.environ, **TORCHRUN_ENV, "LOGLEVEL": "INFO"}  # for agent_timeline()
        self.stderr = open(os.path.join(log_dir, f"{name}.err"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.started = start_time
        self._steps = steps
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"agent-{name}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                event["agent"] = self.name
                event["attempt"] = f"{self.name}:{event['pid']}"
                self._steps.add(event)

    def worker_pids(self) -> list[int]:
        return [pid for pid in descendants(self.proc.pid) if "torchrun_elastic" in cmdline(pid)]

    def kill(self) -> None:
        """SIGKILL the agent and everything under it (its workers run in their own sessions)."""
        kill_pids([self.proc.pid, *descendants(self.proc.pid)])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.stderr.close()


def agent_timeline(path: str) -> list[list[Any]]:
    """[wall time, event] from a torchrun agent's log (``LOGLEVEL=INFO``)."""
    import re

    timeline = []
    year = time.localtime().tm_year
    pattern = re.compile(r"^[IWE](\d{4}) (\d\d:\d\d:\d\d)\.(\d+) ")
    with contextlib.suppress(OSError), open(path, errors="replace") as handle:
        for line in handle:
            match = pattern.match(line)
            label = next((v for k, v in AGENT_MARKS.items() if k in line), None)
            if match is None or label is None:
                continue
            day, clock, fraction = match.groups()
            stamp = time.strptime(f"{year}{day} {clock}", "%Y%m%d %H:%M:%S")
            timeline.append([round(time.mktime(stamp) + float(f"0.{fraction}"), 3), label])
    return timeline


def run_torchrun(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    run_id = f"rec{os.getpid()}{int(time.time())}"
    steps = StepLog()
    agents: list[Agent] = []
    out: dict[str, Any] = {"rdzv_conf": TORCHRUN_RDZV_CONF, "monitor_interval": TORCHRUN_MONITOR_S}
    with tempfile.TemporaryDirectory(prefix="rl-rec-torchrun-") as tmp:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes=1:{MAX_WORKERS}",
            "--nproc-per-node=1",
            f"--max-restarts={args.max_restarts}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-id={run_id}",
            f"--rdzv-conf={TORCHRUN_RDZV_CONF}",
            f"--monitor-interval={TORCHRUN_MONITOR_S}",
            str(TORCHRUN_SCRIPT),
            "--ckpt-dir",
            tmp,
            "--batch",
            str(BATCH),
            "--max-world",
            str(MAX_WORKERS),
            "--hidden",
            ",".join(str(h) for h in HIDDEN),
            "--lr",
            str(LR),
            "--checkpoint-every",
            str(args.checkpoint_every),
            "--step-time",
            str(args.torchrun_step_time),
        ]

        def start(name: str) -> Agent:
            agent = Agent(name, command, steps, tmp, time.time())
            agents.append(agent)
            return agent

        try:
            begun = time.perf_counter()
            # The first agent hosts the rendezvous store; the second must find it up,
            # or it would host one itself.
            start("a")
            deadline = time.monotonic() + args.timeout
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                if time.monotonic() > deadline or agents[0].proc.poll() is not None:
                    raise Failed("the first torchrun agent did not open its rendezvous store")
                time.sleep(0.2)
            start("b")
            first = steps.wait_for(lambda e: e["world"] == MAX_WORKERS, args.timeout)
            out["start_s"] = None if first is None else round(time.perf_counter() - begun, 2)

            def lose_node() -> dict[str, Any]:
                agents[1].kill()  # not the store's host: losing that one ends the job
                return {}

            def add_node() -> dict[str, Any]:
                start("c")
                return {}

            def kill_process() -> dict[str, Any]:
                newest = agents[-1]
                pids = newest.worker_pids()
                if not pids:
                    raise Failed(f"no worker process under agent {newest.name}")
                kill_pids(pids[:1])
                return {"killed_pid": pids[0]}

            out.update(
                run_scenario(
                    args,
                    steps,
                    lose_node=lose_node,
                    add_node=add_node,
                    kill_process=kill_process,
                    alive=lambda: agents[0].proc.poll() is None,
                )
            )
        except Failed as exc:
            out["error"] = str(exc)
        finally:
            for agent in agents:
                agent.kill()
            out["events"] = len(steps)
            timeline = agent_timeline(os.path.join(tmp, "a.err"))  # the agent that stays
            for part in ("node", "grow", "process"):
                if isinstance(out.get(part), dict):
                    begun, ended = out[part]["at"], out[part]["first_step_at"]
                    out[part]["agent"] = breakdown(timeline, begun, ended)
            if "error" in out:  # keep the end of the host agent's log for diagnosis
                with contextlib.suppress(OSError):
                    out["stderr_tail"] = Path(tmp, "a.err").read_text()[-2000:]
    return out


# --------------------------------------------------------------------------- summary

METRICS = {
    "resume_s": ("node", "resume_s"),
    "steps_lost": ("node", "steps_lost"),
    "grow_s": ("grow", "grow_s"),
    "grow_steps_lost": ("grow", "steps_lost"),
    "kill_resume_s": ("process", "resume_s"),
    "kill_steps_lost": ("process", "steps_lost"),
    "step_s": ("node", "step_s"),
}


def values(runs: list[dict[str, Any]], metric: str) -> list[float]:
    part, key = METRICS[metric]
    return [r[part][key] for r in runs if r.get(part, {}).get(key) is not None]


def med(runs: list[dict[str, Any]], metric: str) -> float | None:
    found = values(runs, metric)
    return round(median(found), 2) if found else None


def summarise(runs: dict[str, list[dict[str, Any]]], interval: int) -> dict[str, Any]:
    """Each headline: raylift's median as ``value``, torchrun's beside it."""
    goals: dict[str, tuple[str, Callable[[float], bool]] | None] = {
        "resume_s": (f"<= {RESUME_GOAL_S:g}", lambda v: v <= RESUME_GOAL_S),
        "steps_lost": (f"<= {interval} (one checkpoint interval)", lambda v: v <= interval),
        "grow_s": None,
        "grow_steps_lost": None,
        "kill_resume_s": (f"<= {RESUME_GOAL_S:g}", lambda v: v <= RESUME_GOAL_S),
        "kill_steps_lost": (f"<= {interval}", lambda v: v <= interval),
        "step_s": None,
    }
    summary: dict[str, Any] = {}
    for metric, goal in goals.items():
        value = med(runs.get("raylift", []), metric)
        entry: dict[str, Any] = {
            "value": value,
            "torchrun": med(runs.get("torchrun", []), metric),
            "n": len(values(runs.get("raylift", []), metric)),
        }
        if goal is not None:
            entry["goal"] = goal[0]
            # Every raylift repeat must meet it, not only the median.
            every = values(runs.get("raylift", []), metric)
            entry["met"] = bool(every) and all(goal[1](v) for v in every)
        summary[metric] = entry
    return summary


def render(
    summary: dict[str, Any], config: dict[str, Any], machine: dict[str, Any], notes: list[str]
) -> str:
    def row(label: str, metric: str, digits: int = 1) -> list[str]:
        entry = summary[metric]
        verdict = ""
        if "goal" in entry:
            verdict = f"{entry['goal']}: {'met' if entry['met'] else 'NOT met'}"
        return [label, fmt(entry["value"], digits), fmt(entry["torchrun"], digits), verdict]

    rows = [
        row("node loss -> first step on 1 worker, s", "resume_s"),
        row("steps lost to the node loss", "steps_lost", 0),
        row("node back -> first step on 2 workers, s", "grow_s"),
        row("steps lost to the regrow", "grow_steps_lost", 0),
    ]
    if summary["kill_resume_s"]["value"] is not None or summary["kill_resume_s"]["torchrun"]:
        rows += [
            row("worker process killed -> first step, s", "kill_resume_s"),
            row("steps lost to the process kill", "kill_steps_lost", 0),
        ]
    rows.append(row("seconds per step (2 workers)", "step_s", 2))
    table = markdown_table(["(median)", "raylift (Ray Train)", "elastic torchrun", "goal"], rows)
    caption = (
        f"MLP {HIDDEN} on digits, 1-{MAX_WORKERS} workers (gloo), batch {BATCH}/worker "
        f"(global {BATCH * MAX_WORKERS} kept), checkpoint every {config['checkpoint_every']} "
        f"steps, killed {config['loss_offset']} steps past a checkpoint, median of "
        f"{config['repeats']}; {machine['cpu_cores']} CPU cores, torch {machine['torch']}, "
        f"ray {machine['ray']}; load average {machine['load_average_1m_at_start']} at the start."
    )
    text = f"{table}\n\n{caption}\n"
    for note in notes:
        text += f"\n{note}\n"
    return text


def wait_until_quiet(limit_s: float) -> dict[str, Any]:
    """Poll the load average up to ``limit_s`` seconds for it to fall below 1."""
    begun = time.monotonic()
    load = load_average()
    while limit_s > 0 and (load or 0.0) >= 1.0 and time.monotonic() - begun < limit_s:
        log(f"waiting for a quiet machine: load average {load}")
        time.sleep(20)
        load = load_average()
    return {"waited_s": round(time.monotonic() - begun), "load_average_1m": load}


def code_version() -> dict[str, Any]:
    """The commit measured, and the raylift files changed on top of it, if any."""

    def git(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["git", *argv], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            )
            return done.stdout.rstrip("\n")
        return ""

    changed = git("status", "--porcelain", "--", "platform")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": changed.splitlines()}


def main() -> None:
    args = parse_args()
    if args.raylift_child:
        raylift_child(args)
        return
    quiet = wait_until_quiet(args.wait_quiet)
    machine = machine_info()
    machine["quiet_wait"] = quiet
    machine["raylift_code"] = code_version()
    if (machine["cpu_busy_at_start"] or 0.0) > 0.1:
        log(
            f"warning: the CPUs were {machine['cpu_busy_at_start']:.0%} busy before the "
            "benchmark started; other work on the machine skews the numbers"
        )
    sides = [s for s in args.sides.split(",") if s]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with ForeignCpu() as foreign:
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for side in order:
                log(f"repeat {repeat + 1}/{args.repeats} {side}")
                before, foreign_before, begun = cpu_times(), foreign.seconds, time.perf_counter()
                load_before = load_average()
                result = run_raylift(args) if side == "raylift" else run_torchrun(args)
                wall_s = time.perf_counter() - begun
                after = cpu_times()
                result["repeat"] = repeat
                result["load_average_1m_before"] = load_before
                result["foreign_cpu_s"] = round(foreign.seconds - foreign_before, 2)
                result["disturbed"] = result["foreign_cpu_s"] > DISTURBED_CORES * wall_s
                if before and after:
                    result["cpu_steal_s"] = round(after["steal"] - before["steal"], 2)
                if result.get("error"):
                    log(f"  {side} FAILED: {result['error']}")
                log(
                    f"  other processes used {result['foreign_cpu_s']:.1f} CPU-s in "
                    f"{wall_s:.0f} s" + (" (DISTURBED)" if result["disturbed"] else "")
                )
                runs[side].append(result)

    disturbed = sum(r["disturbed"] for side in runs.values() for r in side)
    failed = sum(bool(r.get("error")) for side in runs.values() for r in side)
    summary = summarise(runs, args.checkpoint_every)
    config = {
        "job": {
            "model": {"name": "mlp", "hidden_sizes": HIDDEN},
            "data": "digits (val_fraction 0.2)",
            "batch_per_worker": BATCH,
            "global_batch": BATCH * MAX_WORKERS,
            "workers": f"1-{MAX_WORKERS}",
            "optimizer": f"adamw lr={LR} constant",
            "backend": "gloo",
        },
        "checkpoint_every": args.checkpoint_every,
        "loss_offset": args.loss_offset,
        "warmup_steps": args.warmup_steps,
        "dwell_s": args.dwell,
        "kinds": args.kinds,
        "repeats": args.repeats,
        "timeout_s": args.timeout,
        "raylift": {
            "cluster": "ray.cluster_utils.Cluster: head 0 CPUs + 2 worker nodes x 1 CPU",
            "log_every_steps": 1,
            "resize_check_interval_s": args.resize_check,
            "max_failures": args.max_restarts,
            "node_loss": f"Cluster.remove_node(node, allow_graceful={args.graceful})"
            + ("" if args.graceful else " (SIGKILL)"),
            "step_time": "rank 0's time.time() after the step (step_end_time in its "
            "progress report); *_reported_s: when the driver received that report",
        },
        "torchrun": {
            "command": f"torchrun --nnodes=1:{MAX_WORKERS} --nproc-per-node=1 "
            f"--max-restarts={args.max_restarts} --rdzv-backend=c10d "
            f"--rdzv-conf={TORCHRUN_RDZV_CONF} --monitor-interval={TORCHRUN_MONITOR_S}",
            "env": TORCHRUN_ENV,
            "step_time_min_s": args.torchrun_step_time,
            "node_loss": "SIGKILL the non-host agent and its worker",
            "step_time": "the worker's time.time() after the step",
        },
    }
    notes = []
    if args.wait_quiet > 0 and (quiet["load_average_1m"] or 0.0) >= 1.0:
        notes.append(
            f"**The machine never got quiet: after waiting {quiet['waited_s']} s the 1-minute "
            f"load average was still {quiet['load_average_1m']}; run anyway.**"
        )
    if disturbed:
        notes.append(
            f"**{disturbed} of {sum(len(v) for v in runs.values())} runs shared the CPUs with "
            "other processes: noisy.**"
        )
    if failed:
        notes.append(f"**{failed} run(s) failed part-way; see `runs` in the JSON.**")
    payload = {
        "benchmark": NAME,
        "machine": machine,
        "date": now_iso(),
        "config": config,
        "runs": runs,
        "summary": summary,
        "disturbed_runs": disturbed,
        "failed_runs": failed,
    }
    markdown = render(summary, config, machine, notes)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    publish(NAME, payload, markdown, write=not args.no_write)


if __name__ == "__main__":
    main()
