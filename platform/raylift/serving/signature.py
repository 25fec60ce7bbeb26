"""What a served model takes and returns, derived from its export's manifest alone.

- classification: ``input`` FP32 ``[N, *input_shape]`` raw values as the data set
  gives them (the export's preprocessing runs in the server) ->
  ``probabilities`` FP32 ``[N, classes]`` and ``label`` INT64 ``[N]``.
- language modelling (``gpt``): ``text_input`` BYTES ``[N]`` (UTF-8 prompts) ->
  ``text_output`` BYTES ``[N]`` (the completions; sampling options go in the
  request's ``parameters``), the names Triton's generate extension uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raylift.data.base import DatasetInfo
from raylift.serving.protocol import TensorSpec
from raylift.specs.resolve import Objective


@dataclass(frozen=True)
class Signature:
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def generative(self) -> bool:
        return self.task == "language_modeling"


def signature_of(manifest: dict[str, Any]) -> Signature:
    """The inputs and outputs of the export described by ``manifest``."""
    info = DatasetInfo.from_json(manifest["info"])
    if info.task == "language_modeling":
        return Signature(
            task=info.task,
            inputs=(TensorSpec("text_input", "BYTES", (-1,)),),
            outputs=(TensorSpec("text_output", "BYTES", (-1,)),),
        )
    shape = tuple(manifest["preprocessing"].get("input_shape", info.input_shape))
    return Signature(
        task=info.task,
        inputs=(TensorSpec("input", "FP32", (-1, *shape)),),
        outputs=(
            TensorSpec("probabilities", "FP32", (-1, int(info.num_classes or 0))),
            TensorSpec("label", "INT64", (-1,)),
        ),
    )


def model_metadata(
    name: str, version: str, manifest: dict[str, Any], *, quantized: bool
) -> dict[str, Any]:
    """The V2 model metadata response (plus raylift's own ``parameters``)."""
    sig = signature_of(manifest)
    model = manifest["model"]
    return {
        "name": name,
        "versions": [version],
        "platform": "pytorch",
        "inputs": [t.metadata() for t in sig.inputs],
        "outputs": [t.metadata() for t in sig.outputs],
        "parameters": {
            "task": sig.task,
            "quantized": quantized,
            "quantization": "int8" if quantized else "none",
            "architecture": model.get("name") or model.get("import_path"),
            "trained_run": manifest.get("name"),
            "created": manifest.get("created"),
            "metrics": manifest.get("metrics", {}),
            "objective": objective_of(manifest),
        },
    }


def objective_of(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The objective the export was chosen by and its value (exports before it: the spec's)."""
    raw = manifest.get("objective")
    if raw is None:
        train = (manifest.get("spec") or {}).get("train") or {}
        if not train.get("metric"):
            return None
        raw = {"metric": train["metric"], "mode": train.get("mode")}
    objective = Objective.of(raw["metric"], raw.get("mode"))
    value = (manifest.get("metrics") or {}).get(objective.metric)
    return {**objective.model_dump(), "value": value}
