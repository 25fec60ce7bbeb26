"""``hf``: a Hugging Face ``transformers`` causal language model as a raylift model.

The model comes from one of three sources (exactly one is set):

* ``path``: a local HF model directory (config.json + weights; or a hub id where
  the hub is reachable), loaded with ``AutoModelForCausalLM.from_pretrained``;
* ``config``: the fields of an HF config inline, with its ``model_type``
  (``AutoConfig.for_model``), built from scratch with ``from_config``;
* ``config_path``: a config.json, built from scratch the same way.

:class:`CausalLM` wraps it so that the training loop, FSDP and the export see
what they see in the builtin ``gpt``: ``forward(ids) -> logits`` (B, T, V),
``.blocks`` (the decoder layers, found from the model's ``_no_split_modules``:
FSDP2's units, sharded before the root so tied embeddings stay together),
``activation_checkpointing`` (HF's own, non-reentrant), ``context_length`` and
``generate``. Its state-dict keys are the HF model's own under ``hf.``.

``transformers`` is imported only when a model is built (it takes seconds):
validating a spec's params stays cheap. A model that needs code from its
directory or the hub (an ``auto_map`` for an architecture transformers does not
know) is refused unless ``trust_remote_code`` is true, before anything runs.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models.base import MODELS, TokenGenerator
from raylift.registry import Params

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
KEY = "model.params"


class HFParams(Params):
    path: str | None = Field(
        None,
        description="A local Hugging Face model directory (config.json + weights) to load "
        "pretrained weights from, or a hub id where the hub can be reached. Exclusive with "
        "config and config_path.",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="An HF config inline, with its model_type (e.g. {model_type: llama, "
        "hidden_size: 64, num_hidden_layers: 2, ...}): a new model of that architecture, "
        "randomly initialised. Exclusive with path and config_path.",
    )
    config_path: str | None = Field(
        None,
        description="An HF config.json to build a new, randomly initialised model from. "
        "Exclusive with path and config.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of the model's parameters."
    )
    attn_implementation: Literal["sdpa", "eager"] = Field(
        "sdpa",
        description="Attention kernel: sdpa (torch's scaled_dot_product_attention) or eager.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Allow a model whose architecture transformers does not know to run code "
        "from its directory or the hub (its config's auto_map). Off: such a model is refused.",
    )

    @field_validator("path", "config_path")
    @classmethod
    def _absolute_if_local(cls, value: str | None) -> str | None:
        """A path that exists here is made absolute (workers may start elsewhere)."""
        if value is None:
            return None
        expanded = os.path.expanduser(value)
        return os.path.abspath(expanded) if os.path.exists(expanded) else value

    @model_validator(mode="after")
    def _one_source(self) -> HFParams:
        given = [k for k in ("path", "config", "config_path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of path (a pretrained HF model), config (inline HF config "
                f"fields with model_type) or config_path (a config.json); got {given or 'none'}"
            )
        if self.config is not None and not isinstance(self.config.get("model_type"), str):
            raise ValueError(
                "config needs a model_type naming an HF architecture (e.g. llama, qwen2, gpt2)"
            )
        return self


def _find_blocks(model: nn.Module) -> str | None:
    """The dotted name of the ModuleList holding the decoder layers, or None.

    The layer classes are the ones the model names in ``_no_split_modules``
    (the units HF itself never splits across devices: its FSDP units too).
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and all(type(layer).__name__ in names for layer in module)
        ):
            return name
    return None


class CausalLM(nn.Module, TokenGenerator):
    """(B, T) int64 token ids -> (B, T, vocab_size) logits, from an HF causal LM."""

    def __init__(self, hf: nn.Module, context_length: int) -> None:
        super().__init__()
        self.hf = hf
        config = hf.config.get_text_config()
        self.vocab_size = int(config.vocab_size)
        self.context_length = context_length
        blocks = _find_blocks(hf)
        self._blocks_name = f"hf.{blocks}" if blocks else None
        self._checkpointing = False

    @property
    def blocks(self) -> nn.ModuleList | None:
        """The HF model's decoder layers (its own ModuleList: no second set of keys)."""
        return self.get_submodule(self._blocks_name) if self._blocks_name else None

    @property
    def activation_checkpointing(self) -> bool:
        return self._checkpointing

    @activation_checkpointing.setter
    def activation_checkpointing(self, on: bool) -> None:
        if on:
            self.hf.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        elif self._checkpointing:
            self.hf.activation_checkpointing_disable()
        self._checkpointing = bool(on)

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits; ``position_ids`` that restart at 0 mark packed documents, and
        transformers then masks attention to stay within each document."""
        return self.hf(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits


def _read_json(path: str, key: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}", key=key) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc}", key=key) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path} is not an HF config (a JSON object)", key=key)
    return data


def _check_remote_code(fields: dict[str, Any], params: HFParams, key: str, where: str) -> None:
    """Refuse a config whose model needs code from its folder or the hub (not allowed)."""
    from transformers import CONFIG_MAPPING

    if params.trust_remote_code:
        return
    known = fields.get("model_type") in CONFIG_MAPPING
    if fields.get("auto_map") and not known:
        raise SpecError(
            f"{where} needs code from the model's own files (its config.json has an auto_map "
            f"for model_type {fields.get('model_type')!r}, which transformers does not know); "
            "nothing was run. If you trust that code, set model.params.trust_remote_code: true",
            key=key,
        )


def _config_from_fields(fields: dict[str, Any], key: str) -> Any:
    from transformers import CONFIG_MAPPING, AutoConfig

    fields = dict(fields)
    model_type = fields.pop("model_type", None)
    if not isinstance(model_type, str):
        raise SpecError("an HF config needs a model_type (e.g. llama)", key=f"{key}.model_type")
    if model_type not in CONFIG_MAPPING:
        raise SpecError(
            f"unknown HF model_type {model_type!r} (transformers knows e.g. llama, qwen2, gpt2, "
            "mistral)",
            key=f"{key}.model_type",
        )
    fields.pop("auto_map", None)  # a known architecture: transformers' own code runs
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"bad HF {model_type} config: {exc}", key=key) from None


def _load_config(params: HFParams) -> tuple[Any, str]:
    """(the HF config, the spec key its problems are reported at)."""
    from transformers import AutoConfig

    if params.config is not None:
        key = f"{KEY}.config"
        _check_remote_code(params.config, params, key, "model.params.config")
        return _config_from_fields(params.config, key), key
    if params.config_path is not None:
        key = f"{KEY}.config_path"
        fields = _read_json(params.config_path, key)
        _check_remote_code(fields, params, key, params.config_path)
        return _config_from_fields(fields, key), key
    key = f"{KEY}.path"
    path = str(params.path)
    if os.path.isdir(path):
        config_file = os.path.join(path, "config.json")
        if not os.path.isfile(config_file):
            raise SpecError(
                f"{path} is not a Hugging Face model directory (no config.json)", key=key
            )
        _check_remote_code(_read_json(config_file, key), params, key, path)
    elif os.path.exists(path) or os.path.isabs(path) or path.startswith((".", "~")):
        raise SpecError(f"{path}: no such Hugging Face model directory", key=key)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=params.trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise SpecError(
                f"{path} needs code from the model's own files; nothing was run. If you trust "
                "that code, set model.params.trust_remote_code: true",
                key=key,
            ) from None
        raise SpecError(f"{path}: not a usable HF model: {exc}", key=key) from None
    except OSError as exc:
        raise SpecError(
            f"{path}: not a Hugging Face model directory or hub id: {exc}", key=key
        ) from None
    return config, key


def _check_fits(config: Any, info: DatasetInfo, key: str) -> int:
    """The model's vocabulary and positions hold the data's; returns the context length."""
    text = config.get_text_config()
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    if info.vocab_size and vocab < info.vocab_size:
        raise SpecError(
            f"the model's vocab_size {vocab} is smaller than the data's vocabulary "
            f"{info.vocab_size}",
            key=f"{key}.vocab_size" if key.endswith(".config") else key,
        )
    data_context = int(info.input_shape[0])
    positions = getattr(text, "max_position_embeddings", None)
    if positions is not None and int(positions) < data_context:
        raise SpecError(
            f"the model's max_position_embeddings {positions} is shorter than the data's "
            f"context length {data_context}",
            key=f"{key}.max_position_embeddings" if key.endswith(".config") else key,
        )
    return int(positions) if positions is not None else data_context


def check_hf(params: HFParams, info: DatasetInfo) -> tuple[Any, str, int]:
    """The model's config, its spec key and context, checked against the data (no weights).

    Cheap enough for the driver to run before any worker starts.
    """
    if info.task != "language_modeling" or not info.vocab_size:
        raise SpecError(
            f"model 'hf' needs a language modelling data set, got task {info.task!r}",
            key="model.name",
        )
    config, key = _load_config(params)
    return config, key, _check_fits(config, info, key)


def build_hf(params: HFParams, info: DatasetInfo) -> CausalLM:
    """The HF model the params name, wrapped; checked against the data first."""
    from transformers import AutoModelForCausalLM

    config, key, context = check_hf(params, info)
    options: dict[str, Any] = {
        "dtype": DTYPES[params.dtype],
        "attn_implementation": params.attn_implementation,
        "trust_remote_code": params.trust_remote_code,
    }
    try:
        if params.path is not None:
            hf = AutoModelForCausalLM.from_pretrained(params.path, config=config, **options)
        else:
            hf = AutoModelForCausalLM.from_config(config, **options)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot build the HF model: {exc}", key=key) from None
    return CausalLM(hf, context)


@MODELS.register("hf", HFParams, "a Hugging Face transformers causal language model")
def hf(params: HFParams, info: DatasetInfo) -> nn.Module:
    return build_hf(params, info)


def save_pretrained(model: nn.Module, directory: str) -> list[str]:
    """Write ``model`` (a :class:`CausalLM`) as a standard HF model directory; the files.

    ``config.json``, ``model.safetensors`` (tied weights stored once) and
    ``generation_config.json``: what ``AutoModelForCausalLM.from_pretrained`` reads.
    """
    if not isinstance(model, CausalLM):
        raise TypeError(f"not an hf model: {type(model).__name__}")
    before = set(os.listdir(directory))
    model.hf.save_pretrained(directory, safe_serialization=True)
    return sorted(set(os.listdir(directory)) - before)
