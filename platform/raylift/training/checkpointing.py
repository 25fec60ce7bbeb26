"""The one owner of a run's checkpoints on the workers (see ``CheckpointManager``)."""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from raylift.artifacts import checkpoints, sealed
from raylift.errors import CheckpointError
from raylift.specs.resolve import ResolvedJob
from raylift.training.plan import StepPlan

if TYPE_CHECKING:
    from raylift.training.setup import WorkerSetup

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


@dataclass(frozen=True)
class Resumed:
    """Where a resumed attempt continues: the checkpoint's folder and progress."""

    folder: str
    step: int
    samples_seen: int
    restarts: int  # restarts before this attempt
    world_size: int  # workers of the attempt that wrote it


class CheckpointManager:
    """The one owner of a run's checkpoints on each worker.

    ``restore`` finds the newest checkpoint that verifies (all ranks agree) and
    loads it; ``due`` says when a periodic one is due; ``save`` writes (DDP:
    rank 0 the whole state; FSDP: every rank its shards, rank 0 ``state.pt`` and
    the manifest listing every rank's files, written last), seals and reports
    it, keeps the best one under ``best/`` and prunes the checkpoints Ray never
    registered. The folder layout is ``raylift.artifacts.checkpoints``.

    Ray registers a checkpoint only when its controller polls the report, so
    the newest on storage may be unknown to Ray. On restore rank 0 deletes
    half-written folders newer than Ray's latest, keeps those Ray registered
    (Ray prunes them; their names are not reused: ``unusable``), and remembers a
    chosen folder Ray does not know as an orphan to prune later.
    """

    def __init__(self, job: ResolvedJob, rank: int) -> None:
        self.job, self.rank = job, rank
        self.run_dir = job.run_dir
        self.objective = job.objective
        # Checkpoints on storage that Ray never registered (so Ray will not prune them).
        self.orphans: list[str] = []
        # Registered folders that no longer verify: Ray prunes them later, so no new
        # checkpoint may be written under one of these names.
        self.unusable: list[str] = []
        self.best: dict[str, Any] | None = None  # {"value", "step"} of the kept best

    # ------------------------------------------------------------ when

    def due(self, step: int, total: int, plan: StepPlan, epoch_done: bool, samples: int) -> bool:
        """A periodic checkpoint (with validation) is due after optimizer step ``step``."""
        train = self.job.train
        if step == total:
            return True
        if train.checkpoint_every_steps and step % train.checkpoint_every_steps == 0:
            return True
        every_epochs = train.checkpoint_every_epochs
        return bool(every_epochs and epoch_done and plan.epoch_at(samples) % every_epochs == 0)

    # ------------------------------------------------------------ restore

    def restore(self, setup: WorkerSetup, registered: str | None) -> Resumed | None:
        """Load the newest complete checkpoint into ``setup``; None on a fresh start.

        ``registered``: the folder name of Ray's own latest checkpoint, if any.
        """
        state = self._find(registered)
        if state is None:
            return None
        folder = state["folder"]
        if bool(state.get("sharded")) != setup.sharded:
            raise CheckpointError(
                f"checkpoint {folder} was written with strategy "
                f"{'fsdp' if state.get('sharded') else 'ddp'}; resume with the same "
                "scaling.strategy"
            )
        if setup.sharded:  # every rank reads its shards, at whatever world size this is
            from raylift.training.sharding import load_sharded

            with checkpoints.local_folder(self.run_dir, folder) as local:
                load_sharded(local, setup.unwrapped, setup.optimizer)
        else:
            setup.unwrapped.load_state_dict(state["model"])
            setup.optimizer.load_state_dict(state["optimizer"])
        setup.scheduler.load_state_dict(state["scheduler"])
        if setup.scaler is not None and "scaler" in state:
            setup.scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        self.best = state.get("best")
        return Resumed(
            folder=folder,
            step=int(state["step"]),
            samples_seen=int(state["samples_seen"]),
            restarts=int(state.get("restarts", 0)),
            world_size=int(state.get("world_size", 0)),
        )

    def _find(self, registered: str | None) -> dict[str, Any] | None:
        """The newest complete checkpoint's state and folder, the same on every rank."""
        name = None
        state = None
        if self.rank == 0 and (registered or checkpoints.checkpoint_steps(self.run_dir)):
            found = checkpoints.load_newest_complete(self.run_dir)
            if found is not None:
                state, name, incomplete = found
                # Only folders newer than Ray's latest are unknown to Ray; deleting or
                # pruning one Ray registered would break its own pruning and snapshot.
                newest_registered = checkpoints.step_of(registered) if registered else -1
                for folder in incomplete:
                    if checkpoints.step_of(folder) > newest_registered:
                        checkpoints.remove_checkpoint(self.run_dir, folder)
                    else:
                        self.unusable.append(folder)
                self.orphans = [o for o in state.get("orphans", []) if o != name]
                if checkpoints.step_of(name) > newest_registered:
                    self.orphans.append(name)
        name = agree_on(name)
        if name is None:
            return None
        if state is None:
            state = checkpoints.load_named(self.run_dir, name)
        return {**state, "folder": name}

    # ------------------------------------------------------------ save

    def save(
        self,
        setup: WorkerSetup,
        metrics: dict[str, Any],
        *,
        step: int,
        samples_seen: int,
        restarts: int,
    ) -> None:
        """Write, seal and report the checkpoint of ``step`` with ``metrics``."""
        import ray.train

        name = checkpoints.checkpoint_dir_name(step)
        writes = self.rank == 0 and name not in self.unusable  # rank 0 knows what Ray prunes
        if setup.sharded:
            writes = bool(agree_on(writes))
        better = False
        with tempfile.TemporaryDirectory(prefix="raylift-ckpt-") as directory:
            checkpoint = None
            if writes:
                started = time.perf_counter()
                other_files = _write_shards(setup, directory, self.rank) if setup.sharded else None
                if self.rank == 0:
                    better = self._improves_best(metrics)
                    if better:
                        self.best = {"value": float(metrics[self.objective.metric]), "step": step}
                    payload = self._payload(setup, metrics, step, samples_seen, restarts)
                    checkpoints.save_state(
                        directory,
                        payload,
                        extra={"step": step, "metrics": metrics},
                        other_files=other_files,
                    )
                    metrics["checkpoint_s"] = time.perf_counter() - started
                    others = sum(f["bytes"] for f in (other_files or {}).values())
                    metrics["checkpoint_bytes"] = sealed.size_bytes(directory) + others
                    if better and not setup.sharded:
                        checkpoints.keep_best(self.run_dir, directory, step)
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        if setup.sharded and writes:
            # Every rank's upload is done once all have passed report(): only then is
            # the folder on storage complete enough to copy as the best one.
            _barrier()
            if self.rank == 0 and better:
                checkpoints.keep_best_from_storage(self.run_dir, name, step)
        if self.rank == 0 and self.orphans:
            self.orphans = checkpoints.prune_orphans(
                self.run_dir, self.orphans, self.job.train.keep_checkpoints
            )

    def _improves_best(self, metrics: dict[str, Any]) -> bool:
        """Whether this checkpoint beats the kept best by the objective (and one is kept)."""
        metric = self.objective.metric
        if not self.job.train.keep_best or metric not in metrics:
            return False
        than = None if self.best is None else float(self.best["value"])
        return self.objective.better(float(metrics[metric]), than)

    def _payload(
        self,
        setup: WorkerSetup,
        metrics: dict[str, Any],
        step: int,
        samples_seen: int,
        restarts: int,
    ) -> dict[str, Any]:
        """Rank 0's ``state.pt``: everything but the sharded model/optimizer under FSDP."""
        payload: dict[str, Any] = {
            "scheduler": setup.scheduler.state_dict(),
            "step": step,
            "epoch": metrics["epoch"],
            "samples_seen": samples_seen,
            "restarts": restarts,
            "world_size": setup.plan.world_size,
            "rng": rng_states(),
            "spec": json.dumps(self.job.as_json()),
            "metrics": json.dumps(metrics),
            "orphans": list(self.orphans),
            "best": self.best,
            "sharded": setup.sharded,
        }
        if not setup.sharded:
            payload["model"] = setup.unwrapped.state_dict()
            payload["optimizer"] = setup.optimizer.state_dict()
        if setup.scaler is not None:
            payload["scaler"] = setup.scaler.state_dict()
        return payload


def _write_shards(setup: WorkerSetup, directory: str, rank: int) -> dict[str, Any]:
    """This rank's shards into ``directory``; on rank 0, every other rank's file digests."""
    import torch.distributed as dist

    from raylift.training.sharding import save_sharded

    save_sharded(directory, setup.unwrapped, setup.optimizer)
    mine = sealed.file_digests(directory)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return {}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if rank != 0:
        return {}
    return {rel: d for other in gathered[1:] for rel, d in other.items()}


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
