"""Fine-tuning in place: freeze parameters by name, or train LoRA adapters.

LoRA (Hu et al., 2021) keeps a Linear layer's weight ``W`` frozen and learns a
low-rank update: ``y = x W^T + b + (x A^T B^T) * alpha / rank`` with ``A``
(rank x in) random and ``B`` (out x rank) zero, so an adapted model starts out
equal to its base. :class:`LoraLinear` subclasses ``nn.Linear``, so the base
keys stay ``X.weight``/``X.bias`` and the adapters add ``X.lora_a``/``X.lora_b``.
At export :func:`merge_lora_state_dict` folds ``B @ A * scaling`` into ``W``:
the exported weights load into the plain model, and serving needs nothing new.

Names are matched with ``fnmatch`` globs against full dotted names
(``*`` also crosses dots): modules for ``finetune.lora.targets``
(``blocks.0.attn.qkv``), parameters for ``finetune.freeze``
(``blocks.0.attn.qkv.weight``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from raylift.errors import ExportError, SpecError

LORA_KEYS = ("lora_a", "lora_b")
SHOWN_NAMES = 6  # names listed in an error message

# finetune.lora.targets by default: the gpt's attention and feed-forward Linear layers.
DEFAULT_TARGETS = ("*.attn.qkv", "*.attn.proj", "*.mlp.fc", "*.mlp.proj")


class LoraLinear(nn.Linear):
    """``nn.Linear`` with a frozen base and a trainable low-rank update ``B @ A``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if rank <= 0:
            raise ValueError(f"LoRA rank must be > 0, got {rank}")
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.lora_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_a = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.empty(out_features, rank, device=device, dtype=dtype))
        self.reset_lora()
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    def reset_lora(self) -> None:
        """``A`` as nn.Linear initialises a weight, ``B`` zero: the update starts at 0."""
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0
    ) -> LoraLinear:
        """A LoraLinear holding a copy of ``linear``'s weight and bias."""
        weight = linear.weight
        lora = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            lora.weight.copy_(weight)
            if linear.bias is not None and lora.bias is not None:
                lora.bias.copy_(linear.bias)
        return lora.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        return F.linear(x, self.weight, self.bias) + update * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}"


@dataclass(frozen=True)
class ParamCounts:
    """Trainable and total parameter elements of a model (tied tensors counted once)."""

    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def metrics(self) -> dict[str, int]:
        return {"trainable_params": self.trainable, "total_params": self.total}

    def describe(self) -> str:
        """E.g. ``trainable 1.2% of parameters (12,288 of 1,000,000)``."""
        return f"trainable {self.share:.1%} of parameters ({self.trainable:,} of {self.total:,})"


def count_parameters(model: nn.Module) -> ParamCounts:
    params = list(model.parameters())
    return ParamCounts(
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )


def _examples(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    more = f", ... ({len(names)} in all)" if len(names) > SHOWN_NAMES else ""
    return shown + more


def _matching(names: Iterable[str], pattern: str) -> list[str]:
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def freeze(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Stop gradients for parameters whose names match any glob; returns their names.

    SpecError (key ``finetune.freeze``) for a pattern that matches nothing, or
    when no trainable parameter would be left.
    """
    # Tied parameters appear under every name (head.weight and tok_emb.weight).
    named = list(model.named_parameters(remove_duplicate=False))
    names = [name for name, _ in named]
    frozen: set[str] = set()
    for pattern in patterns:
        matched = _matching(names, pattern)
        if not matched:
            prefix = [n for n in names if n.startswith(pattern + ".")]
            hint = f" (did you mean '{pattern}.*'?)" if prefix else ""
            raise SpecError(
                f"{pattern!r} matches no parameter{hint}; parameter names look like "
                f"{_examples(names)}",
                key="finetune.freeze",
            )
        frozen.update(matched)
    for name, param in named:
        if name in frozen:
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise SpecError(
            "freezes every parameter, so nothing would train; leave some parameters out",
            key="finetune.freeze",
        )
    return [name for name in names if name in frozen]


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Iterable[str] = DEFAULT_TARGETS,
) -> list[str]:
    """Put LoRA adapters on the Linear layers matching ``targets``; freeze the rest.

    Only the adapters (``*.lora_a``, ``*.lora_b``) train afterwards. Returns the
    adapted module names. SpecError (key ``finetune.lora.targets``) for a glob
    that matches no Linear layer, or one whose weight is tied to another module.
    """
    linears = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not isinstance(module, LoraLinear) and name
    ]
    patterns = list(targets)
    if not patterns:
        raise SpecError("name at least one Linear layer glob", key="finetune.lora.targets")
    chosen: list[str] = []
    for pattern in patterns:
        matched = _matching(linears, pattern)
        if not matched:
            raise SpecError(
                f"{pattern!r} matches no Linear layer; the model's Linear layers are "
                f"{_examples(linears) or 'none'} (globs match the full dotted name, "
                "e.g. '*.attn.qkv')",
                key="finetune.lora.targets",
            )
        chosen.extend(name for name in matched if name not in chosen)
    seen: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    for name in chosen:
        if seen[id(model.get_submodule(name).weight)] > 1:
            raise SpecError(
                f"{name!r} shares its weight with another module (tied weights), which "
                "LoRA cannot adapt; leave it out of the targets",
                key="finetune.lora.targets",
            )
    for param in model.parameters():
        param.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        setattr(
            parent, child, LoraLinear.from_linear(linear, rank=rank, alpha=alpha, dropout=dropout)
        )
    return sorted(chosen)


def prepare_for_finetune(model: nn.Module, finetune: Mapping[str, Any] | None) -> nn.Module:
    """Apply a spec's ``finetune`` section (``freeze`` globs and/or ``lora``) in place.

    ``None`` (or an empty section) leaves the model as it is. See
    :func:`count_parameters` for what trains afterwards.
    """
    if not finetune:
        return model
    patterns = finetune.get("freeze") or []
    if patterns:
        freeze(model, patterns)
    lora = finetune.get("lora")
    if lora:
        apply_lora(
            model,
            rank=int(lora["rank"]),
            alpha=float(lora["alpha"]),
            dropout=float(lora.get("dropout", 0.0)),
            targets=lora.get("targets") or DEFAULT_TARGETS,
        )
    return model


def merge_lora_state_dict(
    state_dict: Mapping[str, torch.Tensor], lora: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """A plain state dict: ``P.weight + B @ A * alpha / rank`` per ``P.lora_a``/``P.lora_b``.

    ``lora`` holds ``rank`` and ``alpha`` (the spec's ``finetune.lora``). The
    lora keys are dropped; the input is not modified. The merge is computed in
    float32 and cast back to the weight's dtype.
    """
    scaling = float(lora["alpha"]) / int(lora["rank"])
    prefixes = {key.rpartition(".")[0] for key in state_dict if key.endswith(".lora_a")}
    for prefix in prefixes:
        for leaf in ("lora_b", "weight"):
            if f"{prefix}.{leaf}" not in state_dict:
                raise ExportError(f"{prefix}: has lora_a but no {leaf} to merge with")
    merged: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in LORA_KEYS:
            if prefix not in prefixes:
                raise ExportError(f"{prefix}: has {leaf} but no lora_a to merge with")
            continue
        if leaf == "weight" and prefix in prefixes:
            a = state_dict[f"{prefix}.lora_a"].float()
            b = state_dict[f"{prefix}.lora_b"].float()
            value = (value.float() + (b @ a) * scaling).to(value.dtype)
        merged[key] = value
    return merged
