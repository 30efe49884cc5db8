"""Shared pieces of every stager: input normalisation, the output dict, parameter counts.

Signal contract (all families)
------------------------------
``forward(x)`` takes ``x`` of shape ``(batch, seq, 1, 3000)``, float32, raw EEG in µV
sampled at 100 Hz (30-s epochs); any normalisation happens inside the model. It returns
a dict with

- ``logits`` ``(batch, seq, 5)``: the sequence model's stage scores (W, N1, N2, N3, REM);
- ``epoch_logits`` ``(batch, seq, 5)``: the epoch encoder's own head (stage-1 pre-training);
- ``epoch_features`` ``(batch, seq, epoch_dim)``: epoch-level feature (SleepKD ``F_e``);
- ``sequence_features`` ``(batch, seq, sequence_dim)``: sequence-level feature (``F_s``).

Any ``seq >= 1`` works; ``model.seq_len`` is only the default context length. In causal
(streaming) use the scored epoch is the last position of the window.

Split form (streaming)
----------------------
A family whose sequence model reads only per-epoch quantities is *splittable*
(``model.splittable``): the window model factors exactly into

- an epoch encoder :meth:`Stager.epoch_state`: ``(N, 1, 3000)`` µV -> ``(N, state_dim)``;
- a sequence head :meth:`Stager.sequence_logits`: ``(B, S, state_dim)`` -> ``(B, S, 5)``,

with ``forward(x)["logits"] == sequence_logits(epoch_state(x.reshape(-1, 1, 3000))
.reshape(B, S, -1))``. The daemon then encodes each epoch once and keeps a ring of
states per device instead of re-encoding a whole window per scored epoch. A missing
past epoch (before the night started) is, exactly as in training, an all-zero epoch:
its state is ``epoch_state(zeros)``.
"""

from __future__ import annotations

import torch
from torch import nn

from sleepstream.types import EPOCH_SAMPLES, N_STAGES

#: Default fixed input scale: the model sees ``x / INPUT_SCALE_UV`` (µV).
INPUT_SCALE_UV: float = 50.0
#: Sample values are clipped to ± this many scale units after scaling (artefact guard).
INPUT_CLIP: float = 20.0


class InputNorm(nn.Module):
    """Fixed, stateless input normalisation (so the model contract stays raw µV).

    Parameters
    ----------
    mode : {"scale", "epoch-z"}
        ``"scale"``: divide by ``scale_uv`` (µV) and clip to ``±clip``; keeps the
        amplitude information N3 scoring needs. ``"epoch-z"``: z-score each epoch
        (amplitude-free; more robust across montages).
    scale_uv : float
        Divisor in µV for ``"scale"``.
    clip : float
        Clip bound after scaling (dimensionless); ``0`` disables clipping.
    """

    def __init__(
        self, mode: str = "scale", scale_uv: float = INPUT_SCALE_UV, clip: float = INPUT_CLIP
    ):
        super().__init__()
        if mode not in ("scale", "epoch-z"):
            raise ValueError(f"InputNorm mode {mode!r}; valid: 'scale', 'epoch-z'")
        if scale_uv <= 0:
            raise ValueError(f"InputNorm scale_uv must be > 0, got {scale_uv}")
        self.mode = mode
        self.scale_uv = float(scale_uv)
        self.clip = float(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "epoch-z":
            mean = x.mean(dim=-1, keepdim=True)
            std = x.std(dim=-1, keepdim=True)
            x = (x - mean) / (std + 1e-3)
        else:
            x = x / self.scale_uv
        if self.clip > 0:
            x = torch.clamp(x, -self.clip, self.clip)
        return x

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, scale_uv={self.scale_uv}, clip={self.clip}"


def check_input(x: torch.Tensor) -> tuple[int, int]:
    """Validate ``x`` ``(batch, seq, 1, 3000)`` and return ``(batch, seq)``.

    The sizes are returned as-is (not ``int()``-ed) so that exported graphs keep dynamic
    batch and sequence axes.
    """
    if x.dim() != 4 or x.shape[2] != 1 or x.shape[3] != EPOCH_SAMPLES:
        raise ValueError(f"input must be (batch, seq, 1, {EPOCH_SAMPLES}) µV, got {tuple(x.shape)}")
    return x.shape[0], x.shape[1]


class Stager(nn.Module):
    """Base class: epoch encoder applied per epoch, then a sequence model.

    Subclasses implement :meth:`encode_epochs` (``(N, 1, 3000)`` normalised ->
    ``(features (N, De), epoch_logits (N, 5))``) and :meth:`encode_sequence`
    (``features (B, S, De)``, ``epoch_logits (B, S, 5)`` -> ``(seq_features (B, S, Ds),
    logits (B, S, 5))``).
    """

    epoch_dim: int
    sequence_dim: int
    seq_len: int
    n_classes: int = N_STAGES
    #: The sequence model reads only per-epoch states: exportable as encoder + head.
    splittable: bool = True

    def __init__(self, norm: str = "scale", scale_uv: float = INPUT_SCALE_UV):
        super().__init__()
        self.norm = InputNorm(norm, scale_uv)

    def encode_epochs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encode_sequence(
        self, features: torch.Tensor, epoch_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # -- split form -------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        """Width ``D`` of the per-epoch state the sequence head reads (default: both
        the epoch feature and the epoch logits, ``epoch_dim + 5``)."""
        return self.epoch_dim + N_STAGES

    def state_of(self, features: torch.Tensor, epoch_logits: torch.Tensor) -> torch.Tensor:
        """Per-epoch state ``(N, D)`` from the encoder's ``(N, De)`` and ``(N, 5)``."""
        return torch.cat([features, epoch_logits], dim=-1)

    def epoch_state(self, x: torch.Tensor) -> torch.Tensor:
        """Epoch encoder of the split form: ``(N, 1, 3000)`` µV -> state ``(N, D)``."""
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != EPOCH_SAMPLES:
            raise ValueError(f"input must be (N, 1, {EPOCH_SAMPLES}) µV, got {tuple(x.shape)}")
        return self.state_of(*self.encode_epochs(self.norm(x)))

    def sequence_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Sequence head of the split form: states ``(B, S, D)`` -> logits ``(B, S, 5)``."""
        feats, elog = states[..., : self.epoch_dim], states[..., self.epoch_dim :]
        return self.encode_sequence(feats, elog)[1]

    def forward_epochs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Epoch encoder only (stage-1 pre-training): ``epoch_features``, ``epoch_logits``."""
        b, s = check_input(x)
        flat = self.norm(x.reshape(b * s, 1, EPOCH_SAMPLES))
        feats, elog = self.encode_epochs(flat)
        return {
            "epoch_features": feats.reshape(b, s, -1),
            "epoch_logits": elog.reshape(b, s, -1),
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.forward_epochs(x)
        seq_feats, logits = self.encode_sequence(out["epoch_features"], out["epoch_logits"])
        out["sequence_features"] = seq_feats
        out["logits"] = logits
        return out


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameter counts of ``model``.

    Returns
    -------
    dict
        ``n_trainable``: PyTorch trainable parameters (``requires_grad``);
        ``n_bn_stats``: BatchNorm running mean + running variance entries;
        ``n_params``: ``n_trainable + n_bn_stats``, i.e. the Keras ``summary()`` total the
        SleepKD paper reports (Keras lists BN moving mean/variance as non-trainable
        parameters). LSTMs here keep one bias per gate (PyTorch's ``bias_hh`` is frozen
        at zero), exactly as Keras, so the DeepSleepNet counts match the paper exactly.
    """
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_bn = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            n_bn += m.running_mean.numel() + m.running_var.numel()
    return {"n_params": n_trainable + n_bn, "n_trainable": n_trainable, "n_bn_stats": n_bn}


def keras_like_lstm(input_size: int, hidden: int, bidirectional: bool = True) -> nn.LSTM:
    """A batch-first LSTM with a single (trainable) bias per gate, like Keras.

    PyTorch LSTMs add two bias vectors (``b_ih + b_hh``); they are redundant. ``bias_hh``
    is zeroed and frozen so the parameter count equals the Keras one.
    """
    lstm = nn.LSTM(input_size, hidden, batch_first=True, bidirectional=bidirectional)
    for name, p in lstm.named_parameters():
        if name.startswith("bias_hh"):
            nn.init.zeros_(p)
            p.requires_grad_(False)
    return lstm
