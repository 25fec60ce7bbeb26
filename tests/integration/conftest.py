"""Fixtures of the integration tests: a real local Ray for the tests of one module, or a
real multi-node cluster on this machine (raylift.testing.cluster) for one test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from raylift.testing import cluster


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        object_store_memory=200 * 1024 * 1024,
    )
    yield
    ray.shutdown()


@pytest.fixture
def elastic_cluster() -> Iterator[Any]:
    """Head (0 CPUs) + two 1-CPU worker nodes, connected; torn down afterwards."""
    import ray

    if ray.is_initialized():
        pytest.fail("elastic_cluster needs a process without another Ray connection")
    with cluster.elastic_cluster() as running:
        yield running
