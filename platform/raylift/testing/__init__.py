"""Helpers shared by raylift's tests and benchmarks (``raylift.testing``).

The top of the layers: these modules may import anything in raylift, and nothing in
raylift outside ``raylift.testing`` imports them (tests/unit/test_layers.py checks).
Importing this package imports nothing else; each module pulls in only what it needs.

- ``exports``: real model exports trained in-process in seconds (no Ray Train).
- ``custom_model``: a user model builder, loaded by import path.
- ``k8s_schemas``: offline validation of Kubernetes objects against their schemas.
- ``cluster``: a real multi-node Ray cluster on one machine, and what elastic tests
  watch on it (processes by node, event logs, a run in a background thread).
- ``dashboard_queries``: every query of the Grafana dashboards, ready to run.
- ``metrics_scrape``: one value from this node's Ray metrics endpoint.
- ``process_groups``: kill a ``raylift`` process group and the Ray agents it orphans.
- ``benchmarks``: machine description, results files and tables for benchmarks/.
- ``layers``: the layer table and the import contract (tests/unit/test_layers.py).

Paths to the repository's own assets (``dashboards/``, ``cluster/``, ``jobs/``) are
relative to ``REPO_ROOT``, the source checkout these helpers live in.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[3]
"""The source checkout: ``platform/raylift/testing/`` is three folders below it."""
