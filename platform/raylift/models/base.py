"""The model registry and model construction from a spec."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import RegistryError
from raylift.registry import Params, Registry

# factory(params, info) -> nn.Module
ModelFactory = Callable[[Params, DatasetInfo], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def import_builder(import_path: str) -> Callable[..., nn.Module]:
    """Resolve ``"pkg.module:build"`` to a callable (an import, never eval)."""
    module_name, sep, attr = import_path.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(
            f"model import path {import_path!r} must look like 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"cannot import {module_name!r} for model {import_path!r}: {exc}"
        ) from exc
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise RegistryError(f"{import_path!r}: {module_name} has no callable {attr!r}")
    return builder


def build_model(
    name: str | None, import_path: str | None, params: dict[str, Any], info: DatasetInfo
) -> nn.Module:
    """A registry model by ``name``, or a user's ``import_path`` builder.

    A user builder is called as ``build(info=info, **params)`` and must return
    an ``nn.Module`` taking a batch of model inputs and returning logits.
    """
    if import_path:
        model = import_builder(import_path)(info=info, **params)
        if not isinstance(model, nn.Module):
            raise RegistryError(f"{import_path!r} returned {type(model).__name__}, not nn.Module")
        return model
    assert name is not None
    entry = MODELS.get(name)
    return entry.factory(entry.params_model.model_validate(params), info)


@torch.no_grad()
def generate_tokens(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    context_length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); returns (B, T+new).

    ``model(ids)`` gives (B, T, V) logits; only the last ``context_length`` tokens
    condition each step (no KV cache). ``temperature`` 0 picks the most likely
    token; ``top_k`` keeps the k most likely. Runs in eval mode (no dropout) and
    restores the previous mode.
    """
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = model(idx[:, -context_length:])[:, -1, :].float()
            if temperature <= 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.nn.functional.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, next_id], dim=1)
    finally:
        model.train(was_training)
    return idx


class TokenGenerator:
    """Mixin of the language models: ``generate`` over their own ``context_length``."""

    context_length: int

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (see ``generate_tokens``)."""
        assert isinstance(self, nn.Module)
        return generate_tokens(
            self,
            idx,
            max_new_tokens,
            context_length=self.context_length,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )
