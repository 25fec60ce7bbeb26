"""A real multi-node Ray cluster on one machine, for elastic and fault-tolerance tests.

``elastic_cluster()`` starts a head node with 0 CPUs (so nothing trains on it; the
driver, Train controller and coordinator actors live there) and two worker
nodes with 1 CPU each, so a 2-worker job runs one worker per node and losing a
node loses exactly one worker. The integration tests use it through the
``elastic_cluster`` fixture (tests/integration/conftest.py), in a module that does
not use ``ray_local`` (one Ray per process at a time).

Recovery knobs (Ray 2.60, Train V2). Train copies the ``RAY_TRAIN_*`` variables
it knows from the driver's ``os.environ`` into the controller and the workers
when ``fit()`` starts, so setting them here, before the run, is enough:

- ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (default 60; raylift sets 5 s for
  elastic runs, see ``training/trainer.py``): how long a restart waits for its
  placement group. When a restart is sized for a node that just died (the GCS
  still counts it), it waits this long before retrying smaller. A placement
  group that fits is ready in under a second here, even on a loaded machine.
- ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (default 2): the controller's poll
  period; a dead worker is noticed on the next poll, and reports are taken at
  most one per poll.

``RAY_TMPDIR`` points at a short private folder, so the cluster's sessions,
sockets and ``ray_current_cluster`` file never touch another Ray on this host.
It is removed afterwards unless ``RAYLIFT_KEEP_CLUSTER_TMP`` is set (to read the
Ray logs of a failed test; ``ray_log_lines`` quotes some in failure messages).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raylift.ops.connect import NODE_HEALTH_CHECK, WORKER_ENV_DEFAULTS
from raylift.ray_compat import session
from raylift.ray_compat.trainer import train_env_vars

RECOVERY_ENV = {
    **WORKER_ENV_DEFAULTS,  # what raylift.ops.connect.connect sets (preemption poll 1 s...)
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "OMP_NUM_THREADS": "1",
}
WORKER_NODES = 2


@contextmanager
def elastic_cluster() -> Iterator[Any]:
    """Head (0 CPUs) + two 1-CPU worker nodes, connected; torn down afterwards.

    Yields the ``ray.cluster_utils.Cluster``. Needs a process without another Ray
    connection (RuntimeError otherwise).
    """
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        raise RuntimeError("elastic_cluster needs a process without another Ray connection")
    # Unix socket paths must stay short: not under pytest's long tmp_path.
    root = tempfile.mkdtemp(prefix="rl-cluster-", dir="/tmp")
    saved = {key: os.environ.get(key) for key in [*RECOVERY_ENV, "RAY_TMPDIR", "RAY_ADDRESS"]}
    os.environ.update(RECOVERY_ENV)
    os.environ["RAY_TMPDIR"] = root
    os.environ.pop("RAY_ADDRESS", None)
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "_system_config": NODE_HEALTH_CHECK,
            },
        )
        for _ in range(WORKER_NODES):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        ray.init(
            address=cluster.address,
            logging_level=logging.ERROR,
            log_to_driver=False,
            runtime_env={"env_vars": train_env_vars()},
        )
        yield cluster
    finally:
        # A training thread that outlives a failed test must not auto-connect to
        # another Ray on this host once this cluster is gone (for this process).
        session.disable_auto_connect()
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()
        # Cluster writes <RAY_TMPDIR>/ray/ray_current_cluster; a killed run leaves it.
        with contextlib.suppress(OSError):
            os.remove(os.path.join(root, "ray", "ray_current_cluster"))
        if not os.environ.get("RAYLIFT_KEEP_CLUSTER_TMP"):
            shutil.rmtree(root, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ray_log_lines(pattern: str, limit: int = 40) -> list[str]:
    """Lines matching ``pattern`` in this cluster's Ray logs (for failure messages)."""
    import glob
    import re

    root = os.environ.get("RAY_TMPDIR", "")
    regex = re.compile(pattern)
    found: list[str] = []
    for path in sorted(glob.glob(os.path.join(root, "ray", "session_*", "logs", "*"))):
        with contextlib.suppress(OSError), open(path, errors="replace") as lines:
            found += [
                f"{os.path.basename(path)}: {line.strip()[:300]}"
                for line in lines
                if regex.search(line) and "Reporting training result" not in line
            ]
    return found[-limit:]


def worker_nodes(cluster: Any) -> list[Any]:
    """The cluster's worker nodes (never the head), oldest first."""
    return sorted(cluster.worker_nodes, key=lambda node: node.node_id)


def raylet_pids(nodes: Any) -> dict[int, Any]:
    """pid of each node's raylet -> the node (Ray's worker processes are its children)."""
    return {node.all_processes["raylet"][0].process.pid: node for node in nodes}


def node_hosting(cluster: Any, actor_title: str) -> Any | None:
    """The worker node whose raylet started the process titled ``ray::<actor_title>``.

    Worker processes are children of their node's raylet; this works without the
    dashboard's State API.
    """
    import psutil

    raylets = raylet_pids(cluster.worker_nodes)
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith(f"ray::{actor_title}"):
            node = raylets.get(proc.info["ppid"])
            if node is not None:
                return node
    return None


def wait_for_actor_process(cluster: Any, title: str, timeout: float) -> bool:
    """Wait until one of ``cluster``'s nodes runs a process titled ``ray::<title>``
    (its constructor has returned).

    Train starts a ``PreemptionWatcher`` actor at each worker-group start; on a
    loaded machine its process can take seconds to come up, and a drain issued
    before then is only seen when it does. Only this cluster's raylets' children
    count: another Ray on the host (a parallel test) has its own watchers.
    """
    import psutil

    raylets = raylet_pids(cluster.list_all_nodes())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0].strip() == f"ray::{title}" and proc.info["ppid"] in raylets:
                return True
        time.sleep(0.2)
    return False


def train_worker_processes(cluster: Any) -> list[Any]:
    """psutil processes of this cluster's Ray Train workers (``ray::RayTrainWorker...``)."""
    import psutil

    raylets = raylet_pids(cluster.worker_nodes)
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = proc.info["cmdline"] or []
        title = cmdline[0] if cmdline else ""
        if title.startswith("ray::RayTrainWorker") and proc.info["ppid"] in raylets:
            found.append(proc)
    return found


class EventLog:
    """Thread-safe record of progress events with their arrival times."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        *,
        since: int = 0,
        stop: Callable[[], bool] = lambda: False,
    ) -> int | None:
        """Index of the first event from ``since`` on that matches; None on timeout/stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(since, len(self.events)):
                    if predicate(self.events[index]):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or stop():
                    return None
                self._cond.wait(timeout=min(left, 0.5))


class BackgroundRun:
    """``run_training`` in a thread, so the main thread can remove and add nodes.

    ``Cluster.remove_node`` / ``add_node`` must be called from the main thread.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self._done.set()

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError(f"training did not finish within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        return self.result
