"""``gpt``: a small decoder-only transformer language model, in plain torch.

Pre-LayerNorm blocks (:class:`GPTBlock`, the unit FSDP and activation
checkpointing wrap), causal attention through
``F.scaled_dot_product_attention(is_causal=True)``, learned positions, the
output head tied to the token embedding and GPT-2 style initialisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models.base import MODELS, TokenGenerator
from raylift.registry import Params


class GPTParams(Params):
    num_layers: int = Field(2, ge=1, description="Number of transformer blocks.")
    num_heads: int = Field(4, ge=1, description="Attention heads per block.")
    embed_dim: int = Field(128, ge=1, description="Embedding width; divisible by num_heads.")
    context_length: int | None = Field(
        None,
        ge=1,
        description="Longest sequence the model accepts (default: the data's context length).",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on embeddings/residuals.")
    mlp_ratio: int = Field(4, ge=1, description="Feed-forward width as a multiple of embed_dim.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTParams:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (
            z.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class FeedForward(nn.Module):
    def __init__(self, embed_dim: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, mlp_ratio * embed_dim)
        self.act = nn.GELU()
        self.proj = nn.Linear(mlp_ratio * embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class GPTBlock(nn.Module):
    """One pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, num_heads, dropout)
        self.ln_2 = nn.LayerNorm(embed_dim)
        self.mlp = FeedForward(embed_dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module, TokenGenerator):
    """(B, T) int64 token ids -> (B, T, vocab_size) next-token logits, T <= context_length."""

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        num_layers: int = 2,
        num_heads: int = 4,
        embed_dim: int = 128,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.tok_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(context_length, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            GPTBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size, bias=False)
        # Recompute each block's activations in backward (training only): less memory,
        # ~1/3 more compute. A plain attribute: state-dict keys do not change.
        self.activation_checkpointing = False
        self.head.weight = self.tok_emb.weight  # weight tying
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * num_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.context_length:
            raise ValueError(f"sequence length {t} exceeds context_length {self.context_length}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return self.head(self.ln_f(x))


@MODELS.register("gpt", GPTParams, "decoder-only transformer language model")
def gpt(params: GPTParams, info: DatasetInfo) -> nn.Module:
    if info.task != "language_modeling" or not info.vocab_size:
        raise SpecError(f"model 'gpt' needs a language modelling data set, got task {info.task!r}")
    data_context = info.input_shape[0]
    context = params.context_length or data_context
    if context < data_context:
        raise SpecError(
            f"gpt context_length {context} is shorter than the data's context {data_context}"
        )
    return GPT(
        info.vocab_size,
        context,
        params.num_layers,
        params.num_heads,
        params.embed_dim,
        params.dropout,
        params.mlp_ratio,
    )
