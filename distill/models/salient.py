"""SalientSleepNet family (single channel): a U²-Net-style fully convolutional stager.

Written from the SalientSleepNet paper (Jia et al., IJCAI 2021) and the structure of its
public Keras code (``ziyujia/SalientSleepNet``, ``model/construct_model.py`` and
``model/models.py``, ``SingleSalientModel``). The public code ships no configuration;
the commonly quoted one (filters 16-32-64-128-256, inner 16, MSE filters 8-16-32-64-128)
gives 2.13 M parameters for one branch, far from the 474,662 the SleepKD paper reports
for its single-channel teacher. We keep the paper's structure and encoder widths
(filters 16-32-64-128-256, kernel 5, pooling 10-8-6-4, U-unit depth 4, dilations 1-2-3-4)
and narrow the U-unit inner width to 8 and every MSE module to 16 filters: 484,242
parameters (+2.0 %, Keras-style count, epoch head included). The student is the teacher at
half width (filters 8-...-128, inner 4, MSE 8): 124,222 (+3.4 % of 120,181).

The whole window ``(seq x 3000)`` is treated as one long signal:

- five encoder stages, each a U-unit (a small U-Net: conv+BN, ``depth-1`` conv+BN with
  max-pooling, a bottom conv+BN, a decoder with linear up-sampling and concatenation, and
  a residual add), a 1x1 conv halving the channels, then max-pooling;
- a multi-scale extraction (MSE) module on every stage: four dilated conv+BN branches,
  concatenated, two convs and a BN;
- four decoder stages (up-sample the deeper output to the skip's length, concatenate,
  U-unit, 1x1 conv);
- a 1x1 conv with tanh, an average over each 30-s epoch, and a conv (kernel 5) over the
  epoch axis giving the 5 stage logits.

Named outputs for SleepKD: ``epoch_features`` = the encoder bottleneck (stage 5 after its
MSE) averaged over each epoch's span; ``sequence_features`` = the per-epoch tanh features
that feed the final classifier; ``epoch_logits`` = a linear head on ``epoch_features``
(stage-1 pre-training; not in the paper, 5 x (De + 1) extra parameters).

Deviations: max-pooling uses ``ceil_mode`` so any ``seq >= 1`` works (the Keras code
floors and needs long windows); up-sampling is linear with half-pixel centres (what
``tf.image.resize`` bilinear does on a width-1 image); the final classifier returns
logits (the Keras model ends in a softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.models.base import INPUT_SCALE_UV, InputNorm, check_input
from sleepstream.types import EPOCH_SAMPLES, N_STAGES


class ConvBN(nn.Module):
    """conv (kernel ``k``, dilation ``d``, same padding) -> ReLU -> BatchNorm, as in the code."""

    def __init__(self, c_in: int, c_out: int, k: int, d: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, k, padding=d * (k - 1) // 2, dilation=d)
        self.bn = nn.BatchNorm1d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-1], mode="linear", align_corners=False)


class UUnit(nn.Module):
    """U-unit: a depth-``depth`` U-Net with a residual connection; ``c_in -> c_out``."""

    def __init__(self, c_in: int, c_out: int, inner: int, k: int, pool: int, depth: int):
        super().__init__()
        self.first = ConvBN(c_in, c_out, k)
        self.down = nn.ModuleList(
            ConvBN(c_out if i == 0 else inner, inner, k) for i in range(depth - 1)
        )
        self.pool = nn.MaxPool1d(pool, pool, ceil_mode=True)
        self.bottom = ConvBN(inner, inner, k)
        self.up = nn.ModuleList(
            ConvBN(2 * inner, c_out if d == 1 else inner, k) for d in range(depth - 1, 0, -1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.first(x)
        h, skips = x0, []
        for i, conv in enumerate(self.down):
            h = conv(h)
            skips.append(h)
            if i != len(self.down) - 1:
                h = self.pool(h)
        h = self.bottom(h)
        for conv in self.up:
            skip = skips.pop()
            h = conv(torch.cat([_up(h, skip), skip], dim=1))
        return h + x0


class MSE(nn.Module):
    """Multi-scale extraction: dilated conv+BN branches, concatenated, two convs, BN."""

    def __init__(self, c_in: int, filters: int, k: int, dilations: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(ConvBN(c_in, filters, k, d) for d in dilations)
        self.down1 = nn.Conv1d(filters * len(dilations), 2 * filters, k, padding=(k - 1) // 2)
        self.down2 = nn.Conv1d(2 * filters, filters, k, padding=(k - 1) // 2)
        self.bn = nn.BatchNorm1d(filters, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([b(x) for b in self.branches], dim=1)
        return self.bn(F.relu(self.down2(F.relu(self.down1(h)))))


class SalientSleepNet(nn.Module):
    """Single-channel SalientSleepNet (U²-style encoder-decoder with MSE modules).

    Not splittable (``splittable = False``): the U-Net spans the whole window, so every
    epoch's output depends on the raw samples of its neighbours; it is exported and run
    as one window graph.

    Parameters
    ----------
    filters : tuple of 5 int
        Output channels of the five encoder U-units (halved by a 1x1 conv after each).
    mse_filters : tuple of 5 int
        Output channels of the five MSE modules.
    pooling : tuple of 4 int
        Max-pool sizes between stages (stage 5 reuses the last for its U-unit).
    depths : tuple of 4 int
        U-unit depths (stage 5 reuses the last).
    inner : int
        Channels inside the U-units.
    kernel : int
        Conv kernel size (odd).
    dilations : tuple of int
        Dilation rates of the MSE branches.
    seq_len : int
        Default context length in epochs (20 in the paper).
    norm, scale_uv :
        Input normalisation, see :class:`distill.models.base.InputNorm`.
    """

    splittable: bool = False

    def __init__(
        self,
        filters: tuple[int, ...] = (16, 32, 64, 128, 256),
        mse_filters: tuple[int, ...] = (8, 16, 32, 64, 128),
        pooling: tuple[int, ...] = (10, 8, 6, 4),
        depths: tuple[int, ...] = (4, 4, 4, 4),
        inner: int = 16,
        kernel: int = 5,
        dilations: tuple[int, ...] = (1, 2, 3, 4),
        *,
        seq_len: int = 20,
        norm: str = "scale",
        scale_uv: float = INPUT_SCALE_UV,
    ):
        super().__init__()
        if len(filters) != 5 or len(mse_filters) != 5 or len(pooling) != 4 or len(depths) != 4:
            raise ValueError("filters/mse_filters need 5 entries, pooling/depths 4")
        self.norm = InputNorm(norm, scale_uv)
        pools = (*pooling, pooling[-1])
        deps = (*depths, depths[-1])
        self.enc = nn.ModuleList()
        self.reduce = nn.ModuleList()
        self.mse = nn.ModuleList()
        c = 1
        for i in range(5):
            self.enc.append(UUnit(c, filters[i], inner, kernel, pools[i], deps[i]))
            self.reduce.append(nn.Conv1d(filters[i], filters[i] // 2, 1))
            self.mse.append(MSE(filters[i] // 2, mse_filters[i], kernel, tuple(dilations)))
            c = filters[i] // 2
        self.pools = nn.ModuleList(nn.MaxPool1d(p, p, ceil_mode=True) for p in pooling)
        self.dec = nn.ModuleList()
        self.dec_reduce = nn.ModuleList()
        deeper = mse_filters[4]
        for i in (3, 2, 1, 0):
            self.dec.append(
                UUnit(deeper + mse_filters[i], filters[i], inner, kernel, pools[i], deps[i])
            )
            self.dec_reduce.append(
                nn.Conv1d(filters[i], filters[i] // 2, 1) if i else nn.Identity()
            )
            deeper = filters[i] // 2
        self.head_conv = nn.Conv1d(filters[0], filters[0], 1)
        self.classifier = nn.Conv1d(filters[0], N_STAGES, kernel, padding=(kernel - 1) // 2)
        self.epoch_head = nn.Linear(mse_filters[4], N_STAGES)
        self.epoch_dim = mse_filters[4]
        self.sequence_dim = filters[0]
        self.seq_len = seq_len

    @staticmethod
    def _per_epoch(h: torch.Tensor, s) -> torch.Tensor:
        """Average ``(B, C, L)`` over each epoch's span -> ``(B, S, C)`` (any L)."""
        if h.shape[-1] != s * EPOCH_SAMPLES:  # stretch so every epoch gets whole samples
            h = F.interpolate(h, size=s * 30, mode="linear", align_corners=False)
        b, c = h.shape[0], h.shape[1]
        return h.reshape(b, c, s, -1).mean(dim=-1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, s = check_input(x)
        h = self.norm(x).permute(0, 2, 1, 3).reshape(b, 1, s * EPOCH_SAMPLES)
        skips = []
        for i in range(5):
            h = F.relu(self.reduce[i](self.enc[i](h)))
            skips.append(self.mse[i](h))
            if i < 4:
                h = self.pools[i](h)
        bottleneck = skips[4]
        d = bottleneck
        for j, i in enumerate((3, 2, 1, 0)):
            d = self.dec[j](torch.cat([_up(d, skips[i]), skips[i]], dim=1))
            if i:
                d = F.relu(self.dec_reduce[j](d))
        feats = torch.tanh(self.head_conv(d))  # (B, C, S*3000)
        seq_feats = feats.reshape(b, feats.shape[1], s, EPOCH_SAMPLES).mean(dim=-1)  # (B, C, S)
        logits = self.classifier(seq_feats).transpose(1, 2)
        epoch_feats = self._per_epoch(bottleneck, s)
        return {
            "logits": logits,
            "epoch_logits": self.epoch_head(epoch_feats),
            "epoch_features": epoch_feats,
            "sequence_features": seq_feats.transpose(1, 2),
        }

    def forward_epochs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Epoch outputs only (computed by the full network: its encoder spans the window)."""
        out = self.forward(x)
        return {"epoch_features": out["epoch_features"], "epoch_logits": out["epoch_logits"]}


SALIENT_VARIANTS: dict[str, dict] = {
    "salient-teacher": {"filters": (16, 32, 64, 128, 256), "inner": 8, "mse_filters": (16,) * 5},
    # The teacher at half width: about a quarter of the parameters.
    "salient-student": {"filters": (8, 16, 32, 64, 128), "inner": 4, "mse_filters": (8,) * 5},
}


def _specs() -> list:
    from distill.models import ModelSpec

    target = "distill.models.salient:SalientSleepNet"
    return [
        ModelSpec(
            "salient-teacher",
            "salient",
            "teacher",
            target,
            dict(SALIENT_VARIANTS["salient-teacher"]),
            474_662,
            0.05,
        ),
        ModelSpec(
            "salient-student",
            "salient",
            "student",
            target,
            dict(SALIENT_VARIANTS["salient-student"]),
            120_181,
            0.05,
        ),
    ]
