"""The training job spec (``raylift train FILE``).

Key names here (``train.lr``, ``train.epochs``, ``scaling.min_workers``,
``scaling.max_workers``, ``storage.path``...) are a public contract: scripts,
``--set`` overrides and sweeps address them by dotted path.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raylift.errors import RegistryError
from raylift.registry import did_you_mean
from raylift.specs.base import StrictModel

# Metrics a checkpoint can be scored by, and the task that reports each.
METRICS = {
    "val_loss": None,
    "train_loss": None,
    "val_accuracy": "classification",
    "val_perplexity": "language_modeling",
    "val_token_accuracy": "language_modeling",
}
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEFAULT_STORAGE_ENV = "RAYLIFT_STORAGE_PATH"


def default_storage_path() -> str:
    """``$RAYLIFT_STORAGE_PATH``, else ``~/raylift/runs``."""
    return os.environ.get(DEFAULT_STORAGE_ENV) or os.path.join(
        os.path.expanduser("~"), "raylift", "runs"
    )


class ModelSpec(StrictModel):
    name: str | None = Field(
        None, description="Registry model name (mlp, cnn, gpt, hf). Exclusive with import_path."
    )
    import_path: str | None = Field(
        None,
        description="Your own builder as 'package.module:function', called as "
        "function(info=DatasetInfo, **params). Exclusive with name.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword parameters of the model."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.name is None) == (self.import_path is None):
            raise ValueError(
                "give exactly one of model.name (a registry model) or model.import_path"
            )
        if self.name is not None:
            _check_registry_params("model", self.name, self.params)
        return self


class DataSpec(StrictModel):
    name: str = Field(description="Registry data set name (digits, text, tabular).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the data set (see docs/spec-reference.md)."
    )
    batch_size: int = Field(64, gt=0, description="Examples per worker per micro-batch.")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Fraction of the data held out for validation."
    )
    seed: int = Field(0, description="Seed of the deterministic train/validation split.")
    tokenizer: str | None = Field(
        None,
        description="A Hugging Face tokenizer directory or tokenizer.json for the data sets "
        "that tokenize text (tokens, chat). Default: the tokenizer in the hf model's own "
        "directory (model.params.path or init_from's export), when it has one.",
    )

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_path(cls, value: str | None) -> str | None:
        """A local tokenizer path is made absolute (workers may start elsewhere)."""
        if value is None or "://" in value:
            return value
        return os.path.abspath(os.path.expanduser(value))

    @model_validator(mode="after")
    def _known(self) -> DataSpec:
        _check_registry_params("data", self.name, self.params)
        return self


class TrainSpec(StrictModel):
    epochs: int | None = Field(10, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(
        None, gt=0, description="Optimizer steps in all; caps epochs when both are set."
    )
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (must be > 0).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (sgd only).")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "cosine", description="LR decay after warmup, to min_lr_ratio * lr at the last step."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear LR warmup, in optimizer steps.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final LR as a fraction of lr.")
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the global gradient norm to this value."
    )
    grad_accum_steps: int = Field(
        1, ge=1, description="Micro-batches accumulated into one optimizer step."
    )
    global_batch_size: int | None = Field(
        None,
        gt=0,
        description="Samples per optimizer step across all workers; gradient accumulation "
        "makes up the difference (keep_global batch policy). Exclusive with grad_accum_steps.",
    )
    global_batch_tokens: int | None = Field(
        None,
        gt=0,
        description="Language models: tokens per optimizer step across all workers "
        "(rounded up to whole sequences). Exclusive with global_batch_size.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32, or autocast to bf16 / fp16 (fp16 uses a gradient scaler)."
    )
    activation_checkpointing: bool = Field(
        False,
        description="Recompute each transformer block's activations in backward (gpt, hf): "
        "less memory for about a third more compute.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (needs a C++ compiler on CPU; the first "
        "steps are slow while it compiles).",
    )
    seed: int = Field(0, description="Seed of model init, data order and dropout.")
    checkpoint_every_steps: int | None = Field(
        None, gt=0, description="Checkpoint every N optimizer steps (in addition to epochs)."
    )
    checkpoint_every_epochs: int | None = Field(
        1, gt=0, description="Checkpoint (and validate) every N epochs; null for never."
    )
    keep_checkpoints: int = Field(
        3, ge=1, description="Keep the K newest checkpoints; older ones are deleted."
    )
    keep_best: bool = Field(
        True,
        description="Also keep a copy of the best checkpoint by train.metric (under best/), "
        "so the export is the best model even after it left the K newest.",
    )
    metric: str | None = Field(
        None,
        description="Metric that picks the best checkpoint; default val_accuracy for "
        "classification, val_loss for language models.",
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="Whether the metric is better high (max) or low (min)."
    )
    log_every_steps: int = Field(
        25, gt=0, description="Report loss, LR and throughput every N optimizer steps."
    )
    max_val_batches: int | None = Field(
        None, gt=0, description="Cap validation at N batches per worker (None: all)."
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS:
            raise ValueError(
                f"unknown metric {value!r}{did_you_mean(value, sorted(METRICS))}; "
                f"known: {', '.join(sorted(METRICS))}"
            )
        return value

    @model_validator(mode="after")
    def _length(self) -> TrainSpec:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        if self.mode is not None and self.metric is None:
            raise ValueError("train.mode needs train.metric")
        if self.global_batch_size is not None and self.global_batch_tokens is not None:
            raise KeyedError(
                "set global_batch_size (samples) or global_batch_tokens, not both",
                ["global_batch_tokens"],
            )
        if self.grad_accum_steps != 1 and (self.global_batch_size or self.global_batch_tokens):
            raise KeyedError(
                "grad_accum_steps follows from the global batch size; leave it at 1",
                ["grad_accum_steps"],
            )
        return self


class ScalingSpec(StrictModel):
    min_workers: int = Field(2, ge=1, description="Fewest training workers to run with.")
    max_workers: int = Field(2, ge=1, description="Most training workers to run with.")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); gloo on CPU.")
    resources_per_worker: dict[str, float] | None = Field(
        None, description='Ray resources per worker, e.g. {"CPU": 2, "GPU": 1}.'
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: replicate the model; fsdp: shard parameters and optimizer."
    )
    resize_check_interval_s: float = Field(
        60.0,
        gt=0,
        description="How often an elastic run checks whether more workers fit "
        "(Ray's elastic_resize_monitor_interval_s).",
    )
    batch_policy: Literal["keep_global", "keep_per_worker"] = Field(
        "keep_global",
        description="On a resize: keep_global keeps the global batch (gradient accumulation "
        "adapts); keep_per_worker keeps data.batch_size per worker (global batch changes).",
    )
    scale_lr: bool = Field(
        False,
        description="With keep_per_worker: scale the LR linearly with workers / max_workers.",
    )

    @model_validator(mode="after")
    def _range(self) -> ScalingSpec:
        if self.min_workers > self.max_workers:
            raise KeyedError(
                f"min_workers ({self.min_workers}) > max_workers ({self.max_workers}); "
                "make min_workers <= max_workers",
                ["min_workers"],
            )
        return self

    @property
    def num_workers(self) -> int | tuple[int, int]:
        """Ray's ScalingConfig(num_workers=...): an int when fixed, else (min, max)."""
        if self.min_workers == self.max_workers:
            return self.min_workers
        return (self.min_workers, self.max_workers)


class FailureSpec(StrictModel):
    max_failures: int = Field(
        3, ge=-1, description="Restarts from the latest checkpoint before giving up (-1: forever)."
    )
    max_preemptions: int = Field(
        -1,
        ge=-1,
        description="Restarts after node preemptions (drains), counted apart from max_failures "
        "(-1: forever).",
    )


class StorageSpec(StrictModel):
    path: str = Field(
        default_factory=default_storage_path,
        description="Root for runs: a local directory or a URI Ray understands (s3://, gs://).",
    )

    @field_validator("path")
    @classmethod
    def _expand(cls, value: str) -> str:
        if "://" in value:
            return value
        return os.path.abspath(os.path.expanduser(value))

    @property
    def is_local(self) -> bool:
        return "://" not in self.path or self.path.startswith("file://")


class LoraSpec(StrictModel):
    rank: int = Field(8, gt=0, description="Rank of each adapter's update B @ A.")
    alpha: float = Field(
        16.0, gt=0, description="Adapter scale: the update is multiplied by alpha / rank."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input.")
    targets: list[str] = Field(
        default_factory=lambda: _default_lora_targets(),
        min_length=1,
        description="Globs of the Linear layers to adapt, matched against full module names "
        "(default: the gpt's attention and feed-forward layers).",
    )


class FinetuneSpec(StrictModel):
    freeze: list[str] = Field(
        default_factory=list,
        description="Globs of parameter names to freeze (e.g. 'tok_emb.*', 'blocks.0.*').",
    )
    lora: LoraSpec | None = Field(
        None,
        description="Train LoRA adapters on Linear layers instead of the weights (everything "
        "else frozen); merged into the weights at export.",
    )

    @model_validator(mode="after")
    def _one_method(self) -> FinetuneSpec:
        if self.lora is not None and self.freeze:
            raise KeyedError(
                "has no effect with finetune.lora (LoRA already freezes every weight and "
                "trains only the adapters); choose layers with finetune.lora.targets",
                ["freeze"],
            )
        if self.lora is None and not self.freeze:
            raise ValueError("set finetune.freeze (parameter name globs) or finetune.lora")
        return self


class JobSpec(StrictModel):
    kind: Literal["train"] = Field("train", description="Spec kind; 'train' for a job.")
    name: str = Field(
        pattern=RUN_NAME_PATTERN,
        description="Run name: the folder under storage.path (letters, digits, . _ -).",
    )
    description: str | None = Field(None, description="Free text for humans.")
    model: ModelSpec | None = Field(
        None, description="Model to train; may be omitted with init_from (taken from the export)."
    )
    data: DataSpec = Field(description="Data set and batching.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Optimisation settings.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Workers.")
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where runs go.")
    init_from: str | None = Field(
        None, description="An exported model directory whose weights initialise this run."
    )
    finetune: FinetuneSpec | None = Field(
        None, description="Freeze parameters or train LoRA adapters (None: train everything)."
    )

    @model_validator(mode="after")
    def _model_or_init(self) -> JobSpec:
        if self.model is None and self.init_from is None:
            raise ValueError("set model (name + params) or init_from (a pretrained export)")
        named = self.model.name if self.model is not None else None
        if self.train.activation_checkpointing and named not in (None, "gpt", "hf"):
            raise ValueError(
                f"train.activation_checkpointing: model {named!r} has no transformer blocks "
                "to checkpoint (it is for the gpt and hf models); set it to false"
            )
        fixed = self.train.global_batch_size or self.train.global_batch_tokens
        if fixed and self.scaling.batch_policy == "keep_per_worker":
            raise ValueError(
                "a global batch size needs scaling.batch_policy keep_global "
                "(keep_per_worker lets the global batch change with the workers)"
            )
        return self

    @property
    def init_from_path(self) -> str | None:
        """``init_from`` as a path: a bare run name means ``<storage.path>/<run>/model``."""
        return resolve_model_ref(self.init_from, self.storage.path)

    @property
    def run_dir(self) -> str:
        return self.storage.path.rstrip("/") + "/" + self.name


def _check_registry_params(kind: str, name: str, params: dict[str, Any]) -> None:
    """Raise ValueError (which pydantic reports at the field) for bad names/params."""
    from pydantic import ValidationError

    if kind == "model":
        from raylift.models import MODELS as registry
    else:
        from raylift.data import DATASETS as registry
    try:
        registry.parse_params(name, params)
    except RegistryError as exc:
        raise KeyedError(str(exc), ["name"]) from None
    except ValidationError as exc:
        raise KeyedError(f"bad {kind} params", ["params"], inner=exc) from None


def _default_lora_targets() -> list[str]:
    from raylift.models.lora import DEFAULT_TARGETS

    return list(DEFAULT_TARGETS)


class KeyedError(ValueError):
    """A validator error about a sub-key (``subloc``) of the model it was raised in.

    ``inner`` carries a nested pydantic ValidationError (registry params).
    """

    def __init__(self, message: str, subloc: list[str], inner: Any = None) -> None:
        self.message = message
        self.subloc = subloc
        self.inner = inner
        super().__init__(message)


def resolve_model_ref(ref: str | None, storage_root: str) -> str | None:
    """A model folder path, URI, or bare run name (-> ``<root>/<run>/model``)."""
    if ref is None or "://" in ref:
        return ref
    expanded = os.path.expanduser(ref)
    if os.sep not in expanded and not os.path.exists(expanded):
        return storage_root.rstrip("/") + "/" + ref + "/model"
    return os.path.abspath(expanded)
