"""Transformer family: an AttnSleep-like epoch encoder plus a transformer over the sequence.

Epoch encoder (after AttnSleep, Eldele et al. 2021, written from the paper's description):

- multi-resolution CNN: a small-kernel branch (conv k50 s6) and a large-kernel branch
  (conv k400 s50), each conv -> BN -> GELU -> max-pool -> dropout -> 2 x [conv -> BN ->
  GELU] -> max-pool; the two token sequences are concatenated along time;
- adaptive feature recalibration: a squeeze-and-excitation residual block;
- a 1x1 conv to ``d_model``, a learned position embedding and ``epoch_layers``
  transformer blocks over the ~80 time tokens of the epoch; their mean is the
  **epoch feature** (``d_model``), with a linear epoch head.

Sequence model: sinusoidal epoch positions plus ``seq_layers`` transformer blocks over the
window's epoch features; their output is the **sequence feature** (``d_model``), then a
linear head. Attention is bidirectional inside the window; in causal streaming the scored
epoch is the last one, so no future epoch is ever seen.

Attention is written out (no fused kernels) so both ONNX exporters handle it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distill.models.base import INPUT_SCALE_UV, Stager
from sleepstream.types import EPOCH_SAMPLES, N_STAGES


class Block(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU feed-forward."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ffn(self.norm2(x)))


def _cbg(c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm1d(c_out), nn.GELU()]


def _out_len(layers: nn.Sequential, length: int) -> int:
    """Output length of a stack of Conv1d / MaxPool1d layers (no forward pass needed)."""
    for m in layers:
        if isinstance(m, nn.Conv1d | nn.MaxPool1d):
            k, s, p = (m.kernel_size, m.stride, m.padding)
            k, s, p = (v[0] if isinstance(v, tuple) else v for v in (k, s, p))
            length = (length + 2 * p - k) // s + 1
    return length


class SqueezeExcite(nn.Module):
    """Adaptive feature recalibration: channel gating with a residual connection."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, max(channels // reduction, 4)),
            nn.ReLU(),
            nn.Linear(max(channels // reduction, 4), channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.fc(x.mean(dim=-1)).unsqueeze(-1)


class AttnSleepNet(Stager):
    """AttnSleep-like epoch encoder + transformer sequence model.

    Parameters
    ----------
    cnn : int
        Channels of the multi-resolution CNN (64 -> ``cnn``).
    d_model : int
        Token width of both transformers; ``epoch_dim = sequence_dim = d_model``.
    heads, ffn : int
        Attention heads and feed-forward width.
    epoch_layers, seq_layers : int
        Transformer blocks inside an epoch and across epochs.
    dropout : float
        Dropout in the CNN and the transformers.
    seq_len : int
        Default context length in epochs.
    norm, scale_uv :
        Input normalisation, see :class:`distill.models.base.InputNorm`.
    """

    def __init__(
        self,
        cnn: int = 128,
        d_model: int = 128,
        heads: int = 4,
        ffn: int = 256,
        epoch_layers: int = 2,
        seq_layers: int = 2,
        *,
        first: int = 64,
        dropout: float = 0.1,
        seq_len: int = 20,
        norm: str = "scale",
        scale_uv: float = INPUT_SCALE_UV,
    ):
        super().__init__(norm, scale_uv)
        self.small = nn.Sequential(
            *_cbg(1, first, 50, 6, 24), nn.MaxPool1d(8, 2, 4), nn.Dropout(dropout),
            *_cbg(first, cnn, 8, 1, 4), *_cbg(cnn, cnn, 8, 1, 4), nn.MaxPool1d(4, 4, 2),
        )  # fmt: skip
        self.large = nn.Sequential(
            *_cbg(1, first, 400, 50, 200), nn.MaxPool1d(4, 2, 2), nn.Dropout(dropout),
            *_cbg(first, cnn, 7, 1, 3), *_cbg(cnn, cnn, 7, 1, 3), nn.MaxPool1d(2, 2, 1),
        )  # fmt: skip
        self.afr = SqueezeExcite(cnn)
        self.to_tokens = nn.Conv1d(cnn, d_model, 1)
        n_tokens = _out_len(self.small, EPOCH_SAMPLES) + _out_len(self.large, EPOCH_SAMPLES)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.epoch_blocks = nn.ModuleList(
            Block(d_model, heads, ffn, dropout) for _ in range(epoch_layers)
        )
        self.epoch_norm = nn.LayerNorm(d_model)
        self.epoch_head = nn.Linear(d_model, N_STAGES)
        self.seq_blocks = nn.ModuleList(
            Block(d_model, heads, ffn, dropout) for _ in range(seq_layers)
        )
        self.seq_norm = nn.LayerNorm(d_model)
        self.seq_head = nn.Linear(d_model, N_STAGES)
        self.epoch_dim = d_model
        self.sequence_dim = d_model
        self.seq_len = seq_len
        self.n_tokens = n_tokens

    def encode_epochs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.small(x), self.large(x)], dim=-1)
        h = self.to_tokens(self.afr(h)).transpose(1, 2) + self.pos
        for blk in self.epoch_blocks:
            h = blk(h)
        feats = self.epoch_norm(h.mean(dim=1))
        return feats, self.epoch_head(feats)

    def encode_sequence(
        self, features: torch.Tensor, epoch_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, d = features.shape[1], features.shape[2]
        pos = torch.arange(s, dtype=features.dtype, device=features.device).unsqueeze(1)
        freq = torch.exp(
            torch.arange(0, d, 2, dtype=features.dtype, device=features.device)
            * (-math.log(10000.0) / d)
        )
        pe = torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).reshape(s, d)
        h = features + pe
        for blk in self.seq_blocks:
            h = blk(h)
        h = self.seq_norm(h)
        return h, self.seq_head(h)

    # Split form: the sequence transformer reads only the epoch feature (D = d_model).
    @property
    def state_dim(self) -> int:
        return self.epoch_dim

    def state_of(self, features: torch.Tensor, epoch_logits: torch.Tensor) -> torch.Tensor:
        return features

    def sequence_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.encode_sequence(states, states)[1]


TRANSFORMER_VARIANTS: dict[str, dict] = {
    "transformer-teacher": {
        "cnn": 128,
        "d_model": 128,
        "heads": 4,
        "ffn": 256,
        "epoch_layers": 2,
        "seq_layers": 2,
    },
    "transformer-student": {
        "cnn": 64,
        "first": 32,
        "d_model": 64,
        "heads": 4,
        "ffn": 128,
        "epoch_layers": 1,
        "seq_layers": 1,
    },
}


def _specs() -> list:
    from distill.models import ModelSpec

    target = "distill.models.transformer:AttnSleepNet"
    return [
        ModelSpec(name, "transformer", name.split("-")[1], target, dict(kw), None)
        for name, kw in TRANSFORMER_VARIANTS.items()
    ]
