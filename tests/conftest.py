"""Shared test setup: quiet, quick local Ray settings applied before Ray is imported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray reads these when it is first imported.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# 2-core CI: torch thread spin-waiting under load slows small models 10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("RAY_ADDRESS", None)

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = REPO_ROOT / "jobs"

# `make test` runs 2 pytest-xdist workers, one file at a time each, in collection
# order (--no-loadscope-reorder): the files that take longest go first so that
# neither worker is left with a long one at the end. Measured on 2 cores.
LONGEST_FIRST = [  # seconds each took beside another file, 2026-11-29
    "integration/test_training.py",  # 465
    "integration/test_elastic.py",  # 395
    "integration/test_cluster_jobs.py",  # 282
    "integration/test_monitoring.py",  # 251
    "e2e/test_cli_tune.py",  # 248
    "e2e/test_cli_train.py",  # 166
    "integration/test_serving.py",  # 158
    "integration/test_training_hf.py",  # 139 (2026-12-04)
    "e2e/test_cli_serve.py",  # 68
]


def pytest_configure(config: pytest.Config) -> None:
    """Write the Ray auth token once, before parallel workers start their Rays
    (two Rays creating a missing token at once would disagree on it)."""
    from raylift.ops.auth import default_token_path, ensure_token_file, token_mode_on

    named = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token_mode_on() and not named and "PYTEST_XDIST_WORKER" not in os.environ:
        ensure_token_file(default_token_path())


@pytest.fixture(autouse=True)
def _isolated_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default storage root inside the test's tmp dir; never the user's home."""
    root = tmp_path / "runs"
    monkeypatch.setenv("RAYLIFT_STORAGE_PATH", str(root))
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO_ROOT / "tests").as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file
