"""``TorchTrainer`` less Ray's ``DatasetsCallback`` (for runs without ``datasets``), and the
environment Train gives its workers."""

from __future__ import annotations

import functools
from typing import Any

from raylift.ray_compat.requirements import Requirement

REQUIRES = [
    Requirement("ray.train.torch", "TorchTrainer"),
    Requirement("ray.train.v2._internal.callbacks.datasets", "DatasetsCallback"),
    Requirement(
        "ray.train.v2.api.data_parallel_trainer",
        "DataParallelTrainer._create_default_callbacks",
        uses=("DatasetsCallback(",),
    ),
    Requirement(
        "ray.train.v2.api.data_parallel_trainer",
        "DataParallelTrainer.__init__",
        uses=("self.datasets",),
    ),
    Requirement("ray.train.v2._internal.constants", "get_env_vars_to_propagate"),
]


@functools.cache
def trainer_without_datasets_callback() -> type:
    """A ``TorchTrainer`` subclass that, given no ``datasets``, drops the datasets callback.

    Train V2 starts a ``DatasetManager`` actor (a new process importing Ray Data) at
    every worker-group start, datasets or not; on a restart it competes for CPU with
    the new workers. raylift hands data to the workers through the object store.
    """
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [c for c in callbacks if not isinstance(c, DatasetsCallback)]

    return Trainer


def train_env_vars() -> dict[str, str]:
    """The env vars Train passes to its worker actors (the ``RAY_TRAIN_*`` ones set here).

    A job whose runtime_env carries the same ones lets Train start its workers in Ray's
    prestarted processes instead of new ones.
    """
    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    return dict(get_env_vars_to_propagate())
