"""The one owner of a run's checkpoints on the workers (see ``CheckpointManager``)."""

from __future__ import annotations

import json
import random
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


def rng_states() -> dict[str, Any]:
    """This process's RNG states, in a weights-only-loadable form."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
        },
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = json.loads(states["python"])
    random.setstate((version, tuple(internal), gauss))
    keys = states["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, states["numpy"]["pos"], 0, 0.0))


def agree_on(choice: T) -> T:
    """Rank 0's choice, broadcast so every rank acts on the same (e.g. resumes from
    the same folder)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return choice
    box = [choice]
    dist.broadcast_object_list(box, src=0)
    return box[0]
