"""FSDP2 sharding, gradient-sync control and sharded checkpoints (DCP).

``shard_model`` applies ``fully_shard`` to each transformer block, then to the
root (which keeps the embeddings, the final norm and the tied head together,
so weight tying survives). Parameters stay fp32; mixed precision comes from
``torch.autocast`` as with DDP, or from an optional ``MixedPrecisionPolicy``.

Sharded checkpoints go through ``torch.distributed.checkpoint``: every rank
writes its own shard files (``__<rank>_<n>.distcp``) into its own folder, rank
0 also writes ``.metadata``; copying all ranks' files into one folder gives a
checkpoint that loads at any world size, or without a process group.

Loading is weights-only: DCP itself ``pickle.load``-s ``.metadata`` and
``torch.load(weights_only=False)``-s non-tensor values. Here ``.metadata`` goes
through an allowlisting unpickler (DCP's metadata classes, ``torch.Size``,
dtypes, layouts, paths; shard files must be plain ``__r_n.distcp`` names) and
non-tensor values through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from typing import IO, Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    Metadata,
    StorageMeta,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from raylift.errors import CheckpointError, TrainingError

MODEL_KEY = "model"
OPTIMIZER_KEY = "optimizer"
EXTRA_KEY = "extra"
METADATA_FILE = ".metadata"
_SHARD_FILE = re.compile(r"__\d+_\d+\.distcp")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    """Silence DCP's warning that it runs without a process group (intended here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules sharded on their own: ``model.blocks`` if a ModuleList, else none."""
    blocks = getattr(model, "blocks", None)
    return list(blocks) if isinstance(blocks, nn.ModuleList) else []


def shard_model(
    model: nn.Module,
    *,
    reshard_after_forward: bool = True,
    mp_policy: MixedPrecisionPolicy | None = None,
) -> nn.Module:
    """FSDP2-shard ``model`` in place over the default process group; returns it.

    Move the model to its device first: the device mesh (``cpu`` or ``cuda``)
    follows the parameters'. Each block is one unit, the root the last; the
    last block and the root stay unsharded between forward and backward
    (backward needs them first).
    """
    if not _distributed():
        raise TrainingError("scaling.strategy fsdp needs an initialised process group")
    param = next(model.parameters(), None)
    device_type = param.device.type if param is not None else "cpu"
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    options: dict[str, Any] = {"mesh": mesh}
    if mp_policy is not None:
        options["mp_policy"] = mp_policy
    units = shard_units(model)
    for i, unit in enumerate(units):
        last = i == len(units) - 1
        fully_shard(unit, reshard_after_forward=reshard_after_forward and not last, **options)
    # None: FSDP's default for the root (kept unsharded after forward).
    fully_shard(model, reshard_after_forward=None if reshard_after_forward else False, **options)
    return model


def wrap_ddp(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """The model on ``device``, in DistributedDataParallel when there are several ranks
    (what ``ray.train.torch.prepare_model(parallel_strategy="ddp")`` does, minus Ray)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = model.to(device)
    if world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` went through ``shard_model`` (is an FSDP2 module)."""
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter inside (accumulation micro-batches)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    elif isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _local_nbytes(tensor: torch.Tensor) -> int:
    tensor = _local(tensor)
    return tensor.numel() * tensor.element_size()


def local_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes this rank holds for parameters and optimizer state (DTensors: local shard)."""
    total = sum(_local_nbytes(p) for p in model.parameters())
    if optimizer is not None:
        for state in optimizer.state.values():
            total += sum(_local_nbytes(v) for v in state.values() if isinstance(v, torch.Tensor))
    return total


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _retie(model: nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """Make the keys of one shared (tied) parameter share one tensor, as ``state_dict()`` does."""
    names: dict[int, list[str]] = {}
    for name, param in _unwrap(model).named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for group in names.values():
        present = [name for name in group if name in state]
        for name in present[1:]:
            state[name] = state[present[0]]
    return state


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) state dict on CPU on rank 0, None on other ranks.

    A collective under FSDP: every rank must call it. Keys are the plain
    model's ``state_dict()`` keys (no ``module.`` prefix).
    """
    if not _distributed():
        state = {k: v.detach().cpu().clone() for k, v in get_model_state_dict(model).items()}
        return _retie(model, state)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    if dist.get_rank() != 0:
        return None
    # A 1-rank gather (or a plain model on CPU) can hand back the live tensors.
    live = {_local(t).data_ptr() for t in (*model.parameters(), *model.buffers())}
    state = {k: v.clone() if v.data_ptr() in live else v for k, v in state.items()}
    return _retie(model, state)


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    state: dict[str, Any] = {MODEL_KEY: get_model_state_dict(model)}
    if optimizer is not None:
        state[OPTIMIZER_KEY] = get_optimizer_state_dict(model, optimizer)
    return state


def save_sharded(
    directory: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    extra_state: dict[str, Any] | None = None,
) -> None:
    """Write this rank's shards of model, optimizer (and ``extra_state``) into ``directory``.

    A collective: every rank calls it, each with its own (local) folder. Rank
    ``r`` writes ``__r_0.distcp``; rank 0 also ``.metadata``. ``extra_state``
    holds tensors and plain values (a scheduler's ``state_dict()``), the same on
    every rank. Works for FSDP, DDP and plain models.
    """
    state = _state(model, optimizer)
    if extra_state is not None:
        state[EXTRA_KEY] = extra_state
    os.makedirs(directory, exist_ok=True)
    try:
        with _single_process_ok():
            dcp.save(
                state,
                storage_writer=FileSystemWriter(directory, overwrite=False),
                no_dist=not _distributed(),
            )
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot save sharded checkpoint: {exc}") from exc


def load_sharded(
    directory: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Restore model (and optimizer) from a merged sharded folder, at any world size.

    A collective under a process group. ``extra_state`` is a template with the
    saved keys (e.g. a fresh scheduler's ``state_dict()``); the loaded values
    are returned (None without a template).
    """
    state = _state(model, optimizer)
    if extra_state is not None:
        state[EXTRA_KEY] = extra_state
    _dcp_load(directory, state, no_dist=not _distributed())
    set_model_state_dict(model, state[MODEL_KEY])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state[OPTIMIZER_KEY])
    return state.get(EXTRA_KEY)


def load_full_model_state(directory: str) -> dict[str, torch.Tensor]:
    """The full model state dict from a merged sharded folder, in this process alone.

    Needs no process group; keys are the plain model's ``state_dict()`` keys.
    """
    metadata = read_metadata(directory)
    template: dict[str, Any] = {}
    for key, item in metadata.state_dict_metadata.items():
        path = (metadata.planner_data or {}).get(key, tuple(key.split(".", 1)))
        if len(path) != 2 or path[0] != MODEL_KEY:
            continue
        if isinstance(item, TensorStorageMetadata):
            template[str(path[1])] = torch.empty(item.size, dtype=item.properties.dtype)
        elif isinstance(item, BytesStorageMetadata):
            template[str(path[1])] = None
    if not template:
        raise CheckpointError(f"{directory}: no model state in the sharded checkpoint")
    _dcp_load(directory, {MODEL_KEY: template}, no_dist=True)
    return template


def _dcp_load(directory: str, state: dict[str, Any], *, no_dist: bool) -> None:
    if not os.path.isfile(os.path.join(directory, METADATA_FILE)):
        raise CheckpointError(f"{directory}: incomplete sharded checkpoint (no {METADATA_FILE})")
    try:
        with _single_process_ok():
            dcp.load(
                state,
                storage_reader=SafeFileSystemReader(directory),
                planner=SafeLoadPlanner(),
                no_dist=no_dist,
            )
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot load sharded checkpoint: {exc}") from exc


# --- weights-only loading ---------------------------------------------------------------

_METADATA_GLOBALS = {
    ("torch.distributed.checkpoint.metadata", name)
    for name in (
        "Metadata",
        "MetadataIndex",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    )
} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    *(
        (module, name)  # StorageMeta.checkpoint_id; pathlib._local from Python 3.13
        for module in ("pathlib", "pathlib._local")
        for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
    ),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP ``.metadata`` only: any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _METADATA_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from checkpoint metadata")


def _load_metadata(stream: IO[bytes], where: str) -> Metadata:
    try:
        metadata = _MetadataUnpickler(stream).load()
    except Exception as exc:
        raise CheckpointError(f"{where}: unreadable {METADATA_FILE}: {exc}") from exc
    if not isinstance(metadata, Metadata) or not isinstance(metadata.storage_data, dict):
        raise CheckpointError(f"{where}: {METADATA_FILE} is not DCP metadata")
    for info in metadata.storage_data.values():
        if not isinstance(info, _StorageInfo) or not _SHARD_FILE.fullmatch(str(info.relative_path)):
            raise CheckpointError(f"{where}: {METADATA_FILE} names an unexpected file")
    return metadata


def read_metadata(directory: str) -> Metadata:
    """The DCP metadata of a sharded folder, unpickled with an allowlist."""
    try:
        with open(os.path.join(directory, METADATA_FILE), "rb") as stream:
            return _load_metadata(stream, directory)
    except FileNotFoundError:
        raise CheckpointError(
            f"{directory}: incomplete sharded checkpoint (no {METADATA_FILE})"
        ) from None


class SafeFileSystemReader(FileSystemReader):
    """DCP's file reader, with ``.metadata`` unpickled through an allowlist."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        metadata = read_metadata(str(self.path))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner, with non-tensor values loaded ``weights_only=True``."""

    def load_bytes(self, read_item: ReadItem, value: IO[bytes]) -> None:
        obj = torch.load(value, weights_only=True)
        fqn = read_item.dest_index.fqn
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj
