"""int8 quantization for serving, and the accuracy gate that guards it.

``quantize_int8`` is the one place the int8 method is chosen (see ``INT8_METHOD``
and ``benchmarks/quantize_choice.py`` for the measurements behind it): a copy
of the model with its ``nn.Linear`` layers quantized to int8 weights, their
activations quantized dynamically per call. ``check_int8`` is the gate: it
measures the plain and the int8 model on the export's held-out sample and
raises :class:`QuantizationRefused` when int8 loses more accuracy than allowed.

Safety: quantization runs on a model whose float weights ``load_export``
already loaded with ``torch.load(weights_only=True)`` (the held-out sample is
read the same way), so nothing but plain tensors is ever unpickled; the int8
model's state_dict also round-trips through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from raylift.errors import QuantizationRefused
from raylift.models.exported import ExportedModel

__all__ = [
    "INT8_METHOD",
    "GateResult",
    "QuantizationRefused",
    "check_int8",
    "model_size_bytes",
    "quantize_int8",
    "sample_accuracy",
]

# The int8 method, chosen by benchmarks/quantize_choice.py (results/quantize_choice.json; 1 torch
# thread as in a 1-CPU replica). Speedup vs the float model in eager mode, MLP [1024, 1024] at
# batch 1 / 64, gpt (2x128, 64 tokens) at batch 1; state_dict size ratio; digits sample drop:
#   torch.ao quantize_dynamic, per-channel weights  1.10x / 2.48x, gpt 1.06x; 3.85x; 0 pts
#   torch.ao quantize_dynamic, per-tensor weights   1.21x / 2.51x, gpt 1.08x; 3.96x; 1.56 pts
#   torchao Int8DynamicActivationInt8Weight, eager  0.10x / 0.52x, gpt 0.29x; 3.93x; 0 pts
#   the same under torch.compile + inductor freezing 1.46x / 2.04x, gpt 1.51x (float compiled
#   alone: gpt 2.1x), after 2-40 s of compilation per input shape
# Nothing reaches 2x at batch 1 on this CPU (AVX512-VNNI, no AMX): a 1-row matmul is dominated by
# per-layer overhead. Replicas run eager, where quantize_dynamic is fastest (bs1 differences
# between its two variants are within the noise); per-channel weights keep every sample
# prediction, per-tensor flips 1 of 64, which the default 0.5-point gate refuses. Deprecated in
# favour of torchao, whose CPU speed needs torch.compile: revisit when it is fast in eager mode.
INT8_METHOD = "torch.ao.quantize_dynamic.per_channel"


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` (in eval mode); ``model`` itself is left unchanged."""
    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        _ignore_deprecations()
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(quantized, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s serialized state_dict (``torch.save``), plain or quantized."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        _ignore_deprecations()
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def sample_accuracy(export: ExportedModel, model: nn.Module | None = None) -> float:
    """Accuracy in [0, 1] of ``model`` (default: the export's) on the export's held-out sample.

    Classifiers: the fraction of sample rows whose argmax is the target. Language
    models (targets ``(N, T)`` next-token ids): the fraction of correct tokens.
    """
    from raylift.data.preprocessing import preprocess

    model = export.model if model is None else model
    sample = export.sample()
    inputs = preprocess(export.preprocessing, sample["inputs"])
    with torch.inference_mode():
        predictions = model(inputs).argmax(-1)
    return float((predictions == sample["targets"]).float().mean())


@dataclass(frozen=True)
class GateResult:
    """The int8 gate's measurements on the export's held-out sample."""

    plain_accuracy: float
    int8_accuracy: float
    drop_pts: float
    plain_bytes: int
    int8_bytes: int


def check_int8(
    export: ExportedModel, max_drop_pts: float, *, model_name: str = ""
) -> tuple[nn.Module, GateResult]:
    """The int8 model and the gate's result; :class:`QuantizationRefused` when int8 loses
    more than ``max_drop_pts`` accuracy points on the export's held-out sample."""
    quantized = quantize_int8(export.model)
    plain = sample_accuracy(export)
    int8 = sample_accuracy(export, quantized)
    result = GateResult(
        plain_accuracy=plain,
        int8_accuracy=int8,
        drop_pts=(plain - int8) * 100,
        plain_bytes=model_size_bytes(export.model),
        int8_bytes=model_size_bytes(quantized),
    )
    if result.drop_pts > max_drop_pts:
        name = model_name or export.manifest.get("name", "")
        raise QuantizationRefused(
            (f"model {name!r}: " if name else "")
            + f"int8 loses {result.drop_pts:.2f} accuracy points on the export's held-out "
            f"sample ({plain:.2%} -> {int8:.2%}), more than max_accuracy_drop_pts "
            f"{max_drop_pts:.2f}; serve it with quantize: none, or raise the threshold"
        )
    return quantized, result


def _ignore_deprecations() -> None:
    """Inside ``warnings.catch_warnings()``: silence torch.ao.quantization's deprecation
    notices (the module, quantized-tensor creation, TypedStorage when saving them)."""
    for message in (
        r"torch\.ao\.quantization is deprecated",
        r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
        r"TypedStorage is deprecated",
    ):
        warnings.filterwarnings("ignore", message=message)
