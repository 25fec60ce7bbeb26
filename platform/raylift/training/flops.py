"""Model FLOPs utilisation (MFU): the share of the accelerator's peak a run achieves.

FLOPs per token = 6 N + 12 L d T (the PaLM paper's count, appendix B): N the
weights of the matrix multiplications (every ``nn.Linear``, the output head
included), L the transformer blocks, d the model width, T the context; forward
and backward, attention scores included, activation recomputation not counted.
MFU = tokens/s x FLOPs per token / (ranks x the device's dense bf16 peak).
"""

from __future__ import annotations

import torch
from torch import nn

# Dense bf16 peak FLOP/s by device name (NVIDIA datasheets, SXM parts, no sparsity).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def matmul_parameters(model: nn.Module) -> int:
    """Weights of the model's linear layers, each shared tensor once (a tied head)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear):
            seen.setdefault(id(module.weight), module.weight.numel())
    return sum(seen.values())


def _blocks_and_width(model: nn.Module) -> tuple[int, int]:
    blocks = getattr(model, "blocks", None)
    layers = len(blocks) if blocks is not None else 0
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return layers, embedding.embedding_dim if embedding is not None else 0


def flops_per_token(model: nn.Module, context_length: int) -> float:
    """Training FLOPs per token of a transformer (6 N + 12 L d T)."""
    layers, width = _blocks_and_width(model)
    return 6.0 * matmul_parameters(model) + 12.0 * layers * width * context_length


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None (a CPU, an unknown GPU)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in BF16_PEAK.items() if key in name), None)


def mfu(tokens_per_s: float, per_token: float, peak: float | None, ranks: int) -> float | None:
    """Model FLOPs utilisation of ``ranks`` devices with ``peak`` each, or None."""
    if not peak or ranks < 1:
        return None
    return tokens_per_s * per_token / (peak * ranks)
