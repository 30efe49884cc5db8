"""DeepSleepNet family as in the SleepKD official code (teacher / TA / student).

Written from the description in ``shared/REFERENCE.md`` and the structure of the
Keras code in ``HychaoWang/SleepKD`` (``code/deepsleepnet.py``, ``TA_sleepnet.py``,
``STU_sleepnet.py``):

Epoch encoder (input ``(N, 1, 3000)``, 30 s at 100 Hz), two CNN branches:

- small filters: conv 64 k50 s6 (valid) -> BN -> ReLU -> max-pool 8 -> dropout ->
  ``n`` x [conv 128 k8 (same) -> BN -> ReLU] -> max-pool 4 -> flatten;
- large filters: conv 64 k400 s50 (valid) -> BN -> ReLU -> max-pool 4 -> dropout ->
  ``n`` x [conv 128 k6 (same) -> BN -> ReLU] -> max-pool 2 -> flatten.

Concatenate -> dense 1024 (**epoch feature**, no activation, as in the code) -> dropout ->
dense 5 (epoch logits).

Sequence model: one BiLSTM (``H`` units per direction) over the epoch encoder's 5-d
logits; its ``2H`` outputs are the **sequence feature**. A residual branch dense(2H) ->
BN -> ReLU on the same 5-d input is added, then dropout and dense 5.

Differences from the Keras code: the LSTM uses PyTorch's tanh cell (Keras code used a
ReLU activation inside the LSTM); Keras' ``LSTM(dropout=0.5)`` input dropout is a
dropout on the 5-d LSTM input here. Parameter counts (Keras style, BN moving statistics
included, see :func:`distill.models.base.count_params`) equal the paper's:
teacher (n=3, H=512) 5,502,474; TA (n=1, H=256) 3,448,330; student (n=0, H=128) 1,552,906.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.models.base import INPUT_SCALE_UV, Stager, keras_like_lstm
from sleepstream.types import EPOCH_SAMPLES, N_STAGES


def _conv_bn_relu(
    c_in: int, c_out: int, k: int, stride: int = 1, same: bool = False
) -> nn.Sequential:
    # TF/Keras "same" for even kernels pads (k-1)//2 on the left and the rest on the right.
    pad: list[nn.Module] = (
        [nn.ConstantPad1d(((k - 1) // 2, k - 1 - (k - 1) // 2), 0.0)] if same else []
    )
    return nn.Sequential(
        *pad,
        nn.Conv1d(c_in, c_out, k, stride=stride),
        nn.BatchNorm1d(c_out, eps=1e-3),  # Keras eps; PyTorch momentum (faster stats)
        nn.ReLU(),
    )


def _branch(
    first_filters: int,
    first_k: int,
    first_stride: int,
    pool1: int,
    n_convs: int,
    filters: int,
    k: int,
    pool2: int,
    dropout: float,
) -> tuple[nn.Sequential, int, int]:
    layers: list[nn.Module] = [
        _conv_bn_relu(1, first_filters, first_k, first_stride),
        nn.MaxPool1d(pool1, pool1),
        nn.Dropout(dropout),
    ]
    c = first_filters
    for _ in range(n_convs):
        layers.append(_conv_bn_relu(c, filters, k, same=True))
        c = filters
    layers += [nn.MaxPool1d(pool2, pool2), nn.Flatten()]
    length = ((EPOCH_SAMPLES - first_k) // first_stride + 1) // pool1 // pool2
    return nn.Sequential(*layers), c, length


class DeepSleepNet(Stager):
    """DeepSleepNet-style two-branch CNN epoch encoder plus a residual BiLSTM.

    Parameters
    ----------
    n_convs : int
        Extra conv layers per branch after the first pooling (teacher 3, TA 1, student 0).
    hidden : int
        LSTM units per direction ``H``; ``sequence_dim = 2 H``.
    first_filters, filters : int
        Filters of the first conv of each branch (64) and of the extra convs (128).
    epoch_dim : int
        Width of the dense epoch feature (1024).
    dropout : float
        Dropout after the first pooling, after the epoch feature and after the residual.
    lstm_dropout : float
        Dropout on the 5-d LSTM input (Keras ``LSTM(dropout=...)``).
    seq_len : int
        Default context length in epochs (20 in the official code).
    norm, scale_uv :
        Input normalisation, see :class:`distill.models.base.InputNorm`.
    """

    def __init__(
        self,
        n_convs: int = 0,
        hidden: int = 128,
        *,
        first_filters: int = 64,
        filters: int = 128,
        epoch_dim: int = 1024,
        dropout: float = 0.5,
        lstm_dropout: float = 0.5,
        seq_len: int = 20,
        norm: str = "scale",
        scale_uv: float = INPUT_SCALE_UV,
    ):
        super().__init__(norm, scale_uv)
        self.small, c_s, len_s = _branch(first_filters, 50, 6, 8, n_convs, filters, 8, 4, dropout)
        self.large, c_l, len_l = _branch(first_filters, 400, 50, 4, n_convs, filters, 6, 2, dropout)
        self.epoch_fc = nn.Linear(c_s * len_s + c_l * len_l, epoch_dim)
        self.epoch_drop = nn.Dropout(dropout)
        self.epoch_head = nn.Linear(epoch_dim, N_STAGES)
        self.lstm_drop = nn.Dropout(lstm_dropout)
        self.lstm = keras_like_lstm(N_STAGES, hidden)
        self.residual = nn.Sequential(
            nn.Linear(N_STAGES, 2 * hidden),
            _TimeBN(2 * hidden),
            nn.ReLU(),
        )
        self.seq_drop = nn.Dropout(dropout)
        self.seq_head = nn.Linear(2 * hidden, N_STAGES)
        self.epoch_dim = epoch_dim
        self.sequence_dim = 2 * hidden
        self.seq_len = seq_len

    def encode_epochs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.epoch_fc(torch.cat([self.small(x), self.large(x)], dim=1))
        return feats, self.epoch_head(self.epoch_drop(feats))

    def encode_sequence(
        self, features: torch.Tensor, epoch_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seq, _ = self.lstm(self.lstm_drop(epoch_logits))
        res = self.residual(epoch_logits)
        logits = self.seq_head(self.seq_drop(seq + res))
        return seq, logits

    # Split form: the BiLSTM and the residual read only the 5 epoch logits, so they are
    # the whole per-epoch state (D = 5).
    @property
    def state_dim(self) -> int:
        return N_STAGES

    def state_of(self, features: torch.Tensor, epoch_logits: torch.Tensor) -> torch.Tensor:
        return epoch_logits

    def sequence_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.encode_sequence(states, states)[1]


class _TimeBN(nn.Module):
    """BatchNorm over the feature axis of a ``(B, S, C)`` tensor (Keras BN on the last axis)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


#: name -> constructor kwargs for the registry.
DEEPSLEEPNET_VARIANTS: dict[str, dict] = {
    "deepsleepnet-teacher": {"n_convs": 3, "hidden": 512},
    "deepsleepnet-ta": {"n_convs": 1, "hidden": 256},
    "deepsleepnet-student": {"n_convs": 0, "hidden": 128},
    # Same topology, a few thousand parameters: fast unit tests on CPU.
    "tiny-teacher": {
        "n_convs": 1,
        "hidden": 16,
        "first_filters": 8,
        "filters": 8,
        "epoch_dim": 32,
        "seq_len": 5,
    },
    "tiny-ta": {
        "n_convs": 1,
        "hidden": 8,
        "first_filters": 4,
        "filters": 6,
        "epoch_dim": 32,
        "seq_len": 5,
    },
    "tiny-student": {
        "n_convs": 0,
        "hidden": 4,
        "first_filters": 4,
        "filters": 4,
        "epoch_dim": 32,
        "seq_len": 5,
    },
}
