"""A real multi-node Ray cluster on this machine, for development: up, status, down.

``up`` runs Ray's ``ray start --block`` (through ``raylift.ops.devnode``, which keeps
every node on 127.0.0.1) once for the head and once per worker node,
each its own raylet with its own resources, every one in its own process group
and with a temp dir of its own (``/tmp/raylift-<uid>-<name>-<id>``, which every
Ray process of the cluster names on its command line). Everything binds
127.0.0.1, token authentication is on, and the head gets raylift's fast node
health checks. ``down`` stops exactly those processes: the ``ray start``
process groups it recorded and any process whose command line names the
cluster's temp dir, and nothing else (``ray stop`` would stop every Ray on the
machine).

State lives in ``$RAYLIFT_HOME/clusters/<name>/`` (``~/.raylift`` by default):
``cluster.json`` and the ``ray start`` logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raylift.errors import ClusterError, UsageError
from raylift.ops.auth import (
    AUTH_MODE_ENV,
    TOKEN_ENV,
    TOKEN_PATH_ENV,
    auth_headers,
    default_token_path,
    ensure_token_file,
)
from raylift.ops.connect import NODE_HEALTH_CHECK
from raylift.ports import free_port

HOME_ENV = "RAYLIFT_HOME"
STATE_FILE = "cluster.json"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 5.0  # then SIGKILL: a raylet draining gracefully takes 10-15 s
# Ports each raylet needs; two raylets on one host must not share any of them.
NODE_PORT_OPTIONS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


@dataclass
class NodeProcess:
    role: str  # "head" or "worker-N"
    pid: int  # the ``ray start --block`` process, leader of its process group
    log: str
    cpus: float
    gpus: float


@dataclass
class DevCluster:
    name: str
    state_dir: str
    temp_dir: str
    gcs_port: int
    dashboard_port: int
    client_port: int
    token_path: str | None
    storage: str | None
    started: float
    nodes: list[NodeProcess] = field(default_factory=list)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)


def raylift_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".raylift").expanduser()


def state_dir(name: str) -> Path:
    return raylift_home() / "clusters" / name


def load(name: str) -> DevCluster | None:
    """The recorded cluster ``name``, or None."""
    path = state_dir(name) / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {path}: {exc}; remove it if no cluster runs") from None
    nodes = [NodeProcess(**node) for node in raw.pop("nodes", [])]
    return DevCluster(**raw, nodes=nodes)


def up(
    name: str = "dev",
    *,
    workers: int = 2,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    head_cpus: float = 0,
    port: int = 6379,
    dashboard_port: int = 8265,
    storage: str | None = None,
) -> DevCluster:
    """Start a head and ``workers`` worker nodes; returns once all have joined."""
    _check_name(name)
    if workers < 0 or cpus_per_worker < 0 or gpus_per_worker < 0 or head_cpus < 0:
        raise UsageError("node counts and resources must be >= 0", option="cluster up")
    existing = load(name)
    if existing is not None and cluster_processes(existing):
        raise ClusterError(
            f"dev cluster {name!r} is already up (dashboard {existing.dashboard_url}); "
            f"run `raylift cluster down --name {name}` first"
        )
    home = state_dir(name)
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    gcs_port = _port(port, "--port")
    dash_port = _port(dashboard_port, "--dashboard-port")
    token_path = _token_path()
    cluster = DevCluster(
        name=name,
        state_dir=str(home),
        # Short: Ray's socket paths under it must stay below the 107-byte limit.
        temp_dir=tempfile.mkdtemp(prefix=f"raylift-{os.getuid()}-{name[:12]}-", dir="/tmp"),
        gcs_port=gcs_port,
        dashboard_port=dash_port,
        client_port=free_port(),
        token_path=token_path,
        storage=os.path.abspath(os.path.expanduser(storage)) if storage else None,
        started=time.time(),
    )
    env = _node_env(cluster)
    try:
        head = _start_node(cluster, "head", head_cpus, 0, env, head=True)
        cluster.nodes.append(head)
        cluster.save()
        _wait_for_dashboard(cluster, head)
        # One at a time: nodes sharing a session dir pick their socket names when they
        # start, and two starting together took the same ones.
        for index in range(1, workers + 1):
            node = _start_node(cluster, f"worker-{index}", cpus_per_worker, gpus_per_worker, env)
            cluster.nodes.append(node)
            cluster.save()
            _wait_for_nodes(cluster, index + 1)
    except BaseException:
        down(name, quiet=True)
        raise
    return cluster


def down(name: str = "dev", *, quiet: bool = False) -> list[int]:
    """Stop every process of cluster ``name``; returns the pids stopped."""
    cluster = load(name)
    if cluster is None:
        if quiet:
            return []
        raise ClusterError(f"no dev cluster {name!r} is recorded in {state_dir(name)}")
    # Worker nodes first, so the head does not see them die one by one.
    for node in sorted(cluster.nodes, key=lambda n: n.role == "head"):
        _signal_group(node.pid, signal.SIGTERM)
    for process in cluster_processes(cluster):
        _signal(process.pid, signal.SIGTERM)
    stopped = _wait_gone(cluster, STOP_GRACE_S)
    remaining = cluster_processes(cluster)
    for node in cluster.nodes:
        _signal_group(node.pid, signal.SIGKILL)
    for process in remaining:
        _signal(process.pid, signal.SIGKILL)
    stopped += _wait_gone(cluster, 5.0)
    left = cluster_processes(cluster)
    if left:
        pids = ", ".join(str(p.pid) for p in left)
        raise ClusterError(f"processes of dev cluster {name!r} survived SIGKILL: {pids}")
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    (Path(cluster.state_dir) / STATE_FILE).unlink(missing_ok=True)
    return sorted(set(stopped))


def cluster_processes(cluster: DevCluster) -> list[Any]:
    """Live processes of the cluster: its ``ray start`` groups and whatever names its temp dir."""
    import psutil

    leaders = {node.pid for node in cluster.nodes}
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            if cluster.temp_dir in cmdline or (
                process.pid in leaders and "ray" in cmdline and "start" in cmdline
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def nodes(cluster: DevCluster, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The cluster's nodes from the head's state API (``/api/v0/nodes``)."""
    data = _dashboard_get(cluster, "/api/v0/nodes?limit=1000&detail=true", timeout)
    listed = data.get("data", {}).get("result", {}).get("result", [])
    return [
        {
            "node_id": node.get("node_id", ""),
            "state": node.get("state", ""),
            "address": node.get("node_ip", ""),
            "is_head": bool(node.get("is_head_node")),
            "resources": node.get("resources_total", {}),
        }
        for node in listed
    ]


# --------------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 40:
        raise UsageError(
            f"cluster name {name!r}: use 1-40 letters, digits, '-' or '_'", option="--name"
        )


def _port(requested: int, option: str) -> int:
    if requested == 0:
        return free_port()
    with socket.socket() as sock:
        # As the servers do: a port in TIME_WAIT (a cluster just stopped) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", requested))
        except OSError:
            raise ClusterError(
                f"port {requested} on 127.0.0.1 is in use (another Ray?); "
                f"choose another with {option} PORT, or {option} 0 for any free port"
            ) from None
    return requested


def _token_path() -> str | None:
    """The token file the cluster and its clients share (created 0600 if missing)."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return None  # the token is in the environment, which the nodes inherit
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    path = Path(named) if named else default_token_path()
    return str(ensure_token_file(path))


def _node_env(cluster: DevCluster) -> dict[str, str]:
    env = dict(os.environ)
    env[AUTH_MODE_ENV] = "token"
    if cluster.token_path:
        env[TOKEN_PATH_ENV] = cluster.token_path
    # Jobs run `raylift train`: the nodes find this environment's raylift first.
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if cluster.storage:
        env["RAYLIFT_STORAGE_PATH"] = cluster.storage
    env.pop("RAY_ADDRESS", None)
    return env


def node_temp_dir(cluster: DevCluster, role: str) -> str:
    """A node's own Ray temp dir under the cluster's (short: Ray's socket paths
    must stay under the 107-byte limit)."""
    return os.path.join(cluster.temp_dir, role.replace("worker-", "w").replace("head", "h"))


def _start_node(
    cluster: DevCluster,
    role: str,
    cpus: float,
    gpus: float,
    env: dict[str, str],
    head: bool = False,
) -> NodeProcess:
    command = [
        sys.executable,
        "-m",
        "raylift.ops.devnode",
        "start",
        "--block",
        f"--num-cpus={_count(cpus)}",
        f"--num-gpus={_count(gpus)}",
        # One temp dir per node, as on separate machines: nodes sharing one session
        # folder unpack a job's working_dir over each other, deleting the folder a
        # running driver has as its current directory.
        f"--temp-dir={node_temp_dir(cluster, role)}",
        "--disable-usage-stats",
    ]
    command += [f"{option}={free_port()}" for option in NODE_PORT_OPTIONS]
    if head:
        command += [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={cluster.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={cluster.dashboard_port}",
            f"--ray-client-server-port={cluster.client_port}",
            f"--system-config={json.dumps(NODE_HEALTH_CHECK)}",
        ]
    else:
        command.append(f"--address={cluster.gcs_address}")
    log = Path(cluster.state_dir) / "logs" / f"{role}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return NodeProcess(role=role, pid=process.pid, log=str(log), cpus=cpus, gpus=gpus)


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _wait_for_dashboard(cluster: DevCluster, head: NodeProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        _check_alive(head)
        try:
            _dashboard_get(cluster, "/api/version", 2.0)
            return
        except ClusterError:
            time.sleep(0.5)
    raise ClusterError(f"the head did not come up in {START_TIMEOUT_S:.0f} s; see {head.log}")


def _wait_for_nodes(cluster: DevCluster, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    alive = 0
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            _check_alive(node)
        try:
            alive = sum(n["state"] == "ALIVE" for n in nodes(cluster))
        except ClusterError:
            alive = 0
        if alive >= count:
            return
        time.sleep(0.5)
    raise ClusterError(
        f"only {alive} of {count} nodes joined in {START_TIMEOUT_S:.0f} s; "
        f"see the logs in {Path(cluster.state_dir) / 'logs'}"
    )


def _check_alive(node: NodeProcess) -> None:
    try:
        os.kill(node.pid, 0)
        finished = os.waitpid(node.pid, os.WNOHANG)[0] == node.pid
    except ChildProcessError:
        finished = False  # not our child (another process started it): alive per kill(0)
    except ProcessLookupError:
        finished = True
    if finished:
        tail = _tail(node.log)
        raise ClusterError(f"`ray start` for the {node.role} exited: {tail} (log: {node.log})")


def _tail(path: str, lines: int = 3) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(line.strip() for line in text[-lines:]) or "no output"


def _dashboard_get(cluster: DevCluster, path: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(cluster.dashboard_url + path, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8") or "{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ClusterError(f"dashboard {cluster.dashboard_url}{path}: {exc}") from None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(cluster: DevCluster, timeout: float) -> list[int]:
    """Wait until no process of the cluster is left (reaping our children); pids seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        for node in cluster.nodes:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(node.pid, os.WNOHANG)
        live = cluster_processes(cluster)
        seen.update(p.pid for p in live)
        if not live or time.monotonic() >= deadline:
            return sorted(seen)
        time.sleep(0.25)
