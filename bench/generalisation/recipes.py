"""Named recipes (frozen once they have ledger rows: a change needs a new name).

Round 1 (epoch-only, proxy v2): what normalisation and which augmentations matter, on a
narrow DeepSleepNet-student encoder (``s-``: 32 first filters, 256-d epoch feature) and
the paper-size student encoder (``d-``). Later rounds: capacity/regularisation and the
sequence head.
"""

from __future__ import annotations

from dataclasses import replace

from bench.generalisation.harness import Recipe

NONE = {"kind": "none"}
RUN = {"kind": "running-robust-scale"}
ALL_BUT_MIX = {"gain": True, "sign_flip": True, "filter": True, "noise": True, "time_scale": True}
SMALL = {"first_filters": 32, "epoch_dim": 256}

_S = Recipe("s", model_kwargs=SMALL)

_R: list[tuple[Recipe, str]] = [
    (
        replace(_S, name="s-raw", normalise=NONE),
        "epoch-only small encoder, µV input, no augmentation",
    ),
    (replace(_S, name="s-norm"), "epoch-only small encoder, running robust scale, no augmentation"),
    (
        replace(_S, name="s-norm-gain", augment={"gain": True, "sign_flip": True}),
        "s-norm + gain ×[1/4, 4], sign flip",
    ),
    (replace(_S, name="s-norm-filter", augment={"filter": True}), "s-norm + random tilt/EQ filter"),
    (replace(_S, name="s-norm-noise", augment={"noise": True}), "s-norm + 1/f noise"),
    (replace(_S, name="s-norm-tscale", augment={"time_scale": True}), "s-norm + time scale ±8 %"),
    (
        replace(_S, name="s-norm-all", augment=ALL_BUT_MIX),
        "s-norm + gain, sign, filter, noise, time scale",
    ),
    (
        replace(_S, name="s-raw-all", normalise=NONE, augment=ALL_BUT_MIX),
        "s-raw + all augmentations",
    ),
    (replace(_S, name="s-norm-ema", ema=0.98), "s-norm, weights averaged (EMA 0.98 per step)"),
    (Recipe("d-norm"), "epoch-only paper-size student encoder (1.38 M), running robust scale"),
]

RECIPES: dict[str, Recipe] = {r.name: r for r, _ in _R}
DESCRIPTIONS: dict[str, str] = {r.name: d for r, d in _R}
