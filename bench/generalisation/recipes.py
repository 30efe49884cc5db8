"""Named recipes (frozen once they have ledger rows: change = new name).

Round 1 (epoch-only DeepSleepNet-student encoder): what normalisation and which
augmentations matter. Later rounds add capacity/regularisation and the sequence head.
"""

from __future__ import annotations

from bench.generalisation.harness import Recipe

NONE = {"kind": "none"}
RUN = {"kind": "running-robust-scale"}
ALL_BUT_MIX = {"gain": True, "sign_flip": True, "filter": True, "noise": True, "time_scale": True}

_R: list[tuple[Recipe, str]] = [
    (Recipe("e-raw", normalise=NONE), "epoch-only, µV input (no normalisation), no augmentation"),
    (Recipe("e-norm"), "epoch-only, running robust scale, no augmentation"),
    (
        Recipe("e-norm-gain", augment={"gain": True, "sign_flip": True}),
        "+ gain ×[1/4, 4], sign flip",
    ),
    (Recipe("e-norm-filter", augment={"filter": True}), "+ random tilt/EQ filter"),
    (Recipe("e-norm-noise", augment={"noise": True}), "+ 1/f noise"),
    (Recipe("e-norm-tscale", augment={"time_scale": True}), "+ time scale ±8 %"),
    (Recipe("e-norm-all", augment=ALL_BUT_MIX), "+ gain, sign, filter, noise, time scale"),
    (Recipe("e-raw-all", normalise=NONE, augment=ALL_BUT_MIX), "µV input + all augmentations"),
]

RECIPES: dict[str, Recipe] = {r.name: r for r, _ in _R}
DESCRIPTIONS: dict[str, str] = {r.name: d for r, d in _R}
