"""Everything one worker builds before its first step: data, model, optimizer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from raylift.data.base import IGNORE_INDEX, DatasetInfo, PreparedData, load_dataset
from raylift.errors import RayliftError, SpecError
from raylift.models.base import build_model
from raylift.models.lora import ParamCounts, count_parameters, prepare_for_finetune
from raylift.specs.job import TrainSpec
from raylift.specs.resolve import ResolvedJob
from raylift.training.flops import flops_per_token, peak_flops
from raylift.training.plan import StepPlan, fixed_global_batch, lr_multiplier, lr_world_factor

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class WorkerSetup:
    job: ResolvedJob
    plan: StepPlan
    data: PreparedData
    model: nn.Module  # DDP-wrapped, FSDP-sharded (in place), or plain
    unwrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    device: torch.device
    loss: LossFn
    baselines: dict[str, float] = field(default_factory=dict)
    gpu_sampler: Any = None  # telemetry.GpuSampler when training on a GPU
    compiled: nn.Module | None = None  # torch.compile(model) when train.compile
    # Language models: training FLOPs per token (training/flops.py) and the device's
    # bf16 peak (None off a known GPU): the reports' MFU.
    flops_per_token: float | None = None
    peak_flops: float | None = None

    @property
    def forward_model(self) -> nn.Module:
        """What the forward pass calls: the compiled model, else ``model``."""
        return self.compiled if self.compiled is not None else self.model

    @property
    def sharded(self) -> bool:
        """FSDP: every rank writes and reads its part of each checkpoint."""
        return self.job.sharded

    @property
    def info(self) -> DatasetInfo:
        return self.data.info

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        precision = self.job.train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def loss_for(task: str) -> LossFn:
    """Per-sample cross-entropy; for language models the mean over the sample's
    trained tokens (targets of ``IGNORE_INDEX`` carry no loss; none trained: 0)."""
    if task == "language_modeling":

        def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            per_token = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                reduction="none",
                ignore_index=IGNORE_INDEX,
            ).reshape(targets.shape)
            trained = (targets != IGNORE_INDEX).sum(dim=-1).clamp(min=1)
            return per_token.sum(dim=-1) / trained

        return lm_loss
    return lambda logits, targets: nn.functional.cross_entropy(
        logits.float(), targets, reduction="none"
    )


def model_kwargs(positions: Any, rows: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """The forward's keyword arguments for these rows: ``position_ids`` of packed data."""
    if positions is None:
        return {}
    return {"position_ids": positions[rows].to(device, non_blocking=True)}


def _context_length(info: DatasetInfo) -> int | None:
    """Tokens per sample of a language-model data set; None for other tasks."""
    return int(info.input_shape[0]) if info.task == "language_modeling" else None


def load_data(job: ResolvedJob) -> PreparedData:
    data = job.data
    return load_dataset(
        data.name,
        data.params,
        val_fraction=data.val_fraction,
        seed=data.seed,
        tokenizer=data.tokenizer,
        work_dir=job.run_dir,
    )


def make_model(job: ResolvedJob, info: DatasetInfo) -> nn.Module:
    torch.manual_seed(job.train.seed)
    return build_model(job.model.name, job.model.import_path, job.model.params, info)


def finetune_section(job: ResolvedJob) -> dict[str, Any] | None:
    """``finetune`` as the plain mapping ``models.lora`` takes (None: train everything)."""
    return job.finetune.model_dump(mode="json") if job.finetune is not None else None


def check_model(job: ResolvedJob, info: DatasetInfo) -> None:
    """On the driver, before any worker starts: the model can be built for this data.

    HF models check their config alone (no weights are read); the others are
    built on the meta device (no memory). A raylift error (a SpecError naming
    the key) stops the run here; anything else is left to the workers to report.
    """
    model = job.model
    if model.name == "hf":
        from raylift.models.hf import HFParams, check_hf

        check_hf(HFParams.model_validate(model.params), info)
        return
    try:
        with torch.device("meta"):
            build_model(model.name, model.import_path, model.params, info)
    except RayliftError:
        raise
    except Exception:
        return


def plan_finetune(job: ResolvedJob, info: DatasetInfo) -> ParamCounts | None:
    """Check the job's ``finetune`` section on the driver, before any worker starts.

    Builds the model on the meta device (no memory, no weights) and applies the
    section, so a glob that matches nothing fails here with its SpecError.
    Returns the parameter counts; None without a finetune section, or when the
    model cannot be built on the meta device (the workers then check).
    """
    if job.finetune is None:
        return None
    model = job.model
    try:
        with torch.device("meta"):
            built = build_model(model.name, model.import_path, model.params, info)
    except RayliftError:
        raise
    except Exception:
        return None
    return count_parameters(prepare_for_finetune(built, finetune_section(job)))


def make_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
    cls = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=train.lr, weight_decay=train.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int, world_factor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    def multiplier(step: int) -> float:
        return world_factor * lr_multiplier(
            step, total_steps, train.schedule, train.warmup_steps, train.min_lr_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def step_plan(job: ResolvedJob, data: PreparedData, world_size: int) -> StepPlan:
    """How the job's optimizer steps map onto the sample stream at ``world_size``."""
    train, scaling = job.train, job.scaling
    return StepPlan(
        num_train=data.num_train,
        per_worker_batch=job.data.batch_size,
        world_size=world_size,
        grad_accum_steps=train.grad_accum_steps,
        epochs=train.epochs,
        max_steps=train.max_steps,
        max_workers=scaling.max_workers,
        batch_policy=scaling.batch_policy,
        fixed_global_batch=fixed_global_batch(
            train.global_batch_size, train.global_batch_tokens, _context_length(data.info)
        ),
    )


def build_worker(
    job: ResolvedJob, data: PreparedData, *, rank: int, world_size: int, device: torch.device
) -> WorkerSetup:
    """Model (initialised from ``init_from`` if set), DDP or FSDP, optimizer, schedule.

    Needs no Ray: under Ray Train ``device`` is ``ray.train.torch.get_device()`` and
    the process group is Ray's; under torchrun they are the script's.
    """
    from raylift.artifacts.export import load_weights
    from raylift.training.sharding import shard_model, wrap_ddp

    train, scaling = job.train, job.scaling
    plan = step_plan(job, data, world_size)
    world_factor = lr_world_factor(
        world_size, scaling.max_workers, scaling.batch_policy, scaling.scale_lr
    )
    model = make_model(job, data.info)
    if job.init_from:
        model.load_state_dict(load_weights(job.init_from))
    prepare_for_finetune(model, finetune_section(job))  # freeze / LoRA, after init_from
    if train.activation_checkpointing:
        enable_activation_checkpointing(model, job)

    context = _context_length(data.info)
    per_token = flops_per_token(model, context) if context else None
    if job.sharded:
        wrapped = unwrapped = shard_model(model.to(device))  # FSDP2 shards in place
    else:
        wrapped = wrap_ddp(model, device, world_size)
        unwrapped = wrapped.module if hasattr(wrapped, "module") else wrapped
    optimizer = make_optimizer(unwrapped, train)
    scheduler = make_scheduler(optimizer, train, plan.total_steps, world_factor)
    scaler = torch.amp.GradScaler(device.type) if train.precision == "fp16" else None
    return WorkerSetup(
        job=job,
        plan=plan,
        data=data,
        model=wrapped,
        unwrapped=unwrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        device=device,
        loss=loss_for(data.info.task),
        baselines=dict(data.baselines),
        compiled=compiled_model(wrapped, train),
        flops_per_token=per_token,
        peak_flops=peak_flops(device),
    )


def compiled_model(model: nn.Module, train: TrainSpec) -> nn.Module | None:
    """``torch.compile(model)`` when ``train.compile`` (inductor; compiles on first use)."""
    return torch.compile(model) if train.compile else None


def enable_activation_checkpointing(model: nn.Module, job: ResolvedJob) -> None:
    """Turn on per-block recomputation; a model without blocks is a spec error."""
    if not hasattr(model, "activation_checkpointing"):
        name = job.model.name or job.model.import_path
        raise SpecError(
            f"model {name!r} has no transformer blocks to checkpoint; "
            "set train.activation_checkpointing to false (it is for the gpt)",
            key="train.activation_checkpointing",
        )
    model.activation_checkpointing = True


def apply_job_hparams(setup: WorkerSetup) -> None:
    """After restoring another run's state (PBT): this job's lr and weight decay win."""
    train = setup.job.train
    scheduler = setup.scheduler
    scheduler.base_lrs = [float(train.lr) for _ in scheduler.base_lrs]
    lrs = [
        base * lam(scheduler.last_epoch)
        for base, lam in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
    ]
    for group, lr in zip(setup.optimizer.param_groups, lrs, strict=True):
        group["initial_lr"] = float(train.lr)
        group["lr"] = lr
        group["weight_decay"] = float(train.weight_decay)
        if "momentum" in group:
            group["momentum"] = float(train.momentum)
