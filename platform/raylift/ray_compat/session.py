"""This process's connection to Ray: the node it joined (session folder, metrics port) and
Ray's auto-connect."""

from __future__ import annotations

from typing import Any

from raylift.ray_compat.requirements import Requirement

REQUIRES = [
    Requirement("ray._private.worker", "_global_node"),
    Requirement("ray._private.node", "Node.get_session_dir_path"),
    Requirement("ray._private.node", "Node.metrics_export_port"),
    Requirement("ray._private.auto_init_hook", "enable_auto_connect"),
    Requirement("ray._private.auto_init_hook", "auto_init_ray", uses=("enable_auto_connect",)),
]


def _node() -> Any:
    import ray._private.worker

    return ray._private.worker._global_node


def session_dir() -> str | None:
    """The connected node's session folder (``<temp dir>/session_...``); None when this
    process started no node and joined none on this machine."""
    node = _node()
    return node.get_session_dir_path() if node is not None else None


def metrics_export_port() -> int | None:
    """The connected node's Prometheus metrics export port; None without a node here."""
    node = _node()
    return int(node.metrics_export_port) if node is not None else None


def disable_auto_connect() -> None:
    """Stop Ray API calls in this process from connecting (``ray.init()``) on their own, e.g.
    to another Ray on this host after the one it used is gone."""
    import ray._private.auto_init_hook as auto_init

    auto_init.enable_auto_connect = False
