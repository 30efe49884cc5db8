"""Export a recipe's final model (trained on SC4001 alone) as the daemon's split ONNX + card.

``python -m bench.generalisation.run final --recipe R --seeds 0 --export OUT.onnx`` trains
:func:`bench.generalisation.harness.train_final` (SC4001 only; DREAMS is never read here)
and calls :func:`export_final`: encoder + head ONNX graphs (``OUT.encoder.onnx``,
``OUT.head.onnx``), parity-checked against torch by :func:`distill.export.export_student`,
and a card (format 2) that declares the recipe's normalisation, the zero-epoch history pad
the head was trained with, and the training recording with its sha256 (so ``replay`` and
``report`` can say when they score the training night).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bench.generalisation import harness as H
from sleepstream.dsp.normalise import NormalisationSpec

#: The one recording with EEG the final models are trained on (both derivations).
SC4001_PSG = "SC4001E0-PSG.edf"
SC4001_HYP = "SC4001EC-Hypnogram.edf"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def description(recipe: H.Recipe, seed: int, what: str) -> str:
    """The card's plain-text account of the training."""
    norm = NormalisationSpec.from_card(recipe.normalise)
    return (
        f"Recipe {recipe.name} ({what}), seed {seed}, trained with "
        "bench/generalisation (no knowledge distillation: a small DeepSleepNet-student "
        f"encoder, {recipe.model_kwargs.get('first_filters', 64)} first filters, "
        f"{recipe.model_kwargs.get('epoch_dim', 'default')}-d epoch state, trained per "
        f"epoch for {recipe.epochs1} passes, then a BiLSTM sequence head on the frozen "
        f"encoder's states over {recipe.seq_len}-epoch causal windows for {recipe.epochs2} "
        "passes, loss on the last (scored) epoch; missing past epochs are the state of an "
        "all-zero epoch, as in the daemon). Data: the one Sleep-EDF night with EEG here "
        "(SC4001E0, trimmed to its 841 scored epochs), both derivations (EEG Fpz-Cz, EEG "
        "Pz-Oz), cut into random 20-240-epoch sessions, each normalised causally from its "
        f"own start with the daemon's running robust scale ({norm.kind}, reference "
        f"{norm.reference_uv:g} µV, prior weight {norm.prior_weight_epochs:g} epochs)"
        + (
            ", each session mixed with the other derivation (a ~ U(0, 1)) before normalisation"
            if recipe.augment.get("mix")
            else ""
        )
        + ". No validation set and no early stopping (fixed passes). The recipe was chosen "
        "on an SC4001-only proxy (cross-derivation, cold-started 60-epoch excerpts, plus "
        "the same after a simulated new amplifier): the highest selection kappa of the "
        "recipes tried (bench/results/generalisation/ledger.md). DREAMS was never used for "
        "training, early stopping or selection; its figures in 'metrics' were computed "
        "once, after this model was frozen."
    )


def export_final(
    model: H.Model,
    recipe: H.Recipe,
    seed: int,
    out: Path,
    data_dir: Path,
    *,
    wall_s: float,
    what: str,
    selection: dict[str, Any] | None = None,
) -> Path:
    """Write ``out``'s split graphs and card; returns the card path."""
    from distill.export import export_student
    from sleepstream.inference.card import ZERO_EPOCH_PAD

    spec = NormalisationSpec.from_card(recipe.normalise)
    psg = Path(data_dir) / SC4001_PSG
    training = {
        "datasets": ["sc4001"],
        "channels": list(recipe.final_derivations),
        "recordings": [
            {
                "name": SC4001_PSG,
                "sha256": _sha256(psg),
                "channels": list(recipe.final_derivations),
            }
        ],
        "hypnograms": [{"name": SC4001_HYP, "sha256": _sha256(psg.with_name(SC4001_HYP))}],
        "description": description(recipe, seed, what),
        "recipe": json.loads(json.dumps(recipe.to_json())),
        "seed": seed,
        "protocol": "all 841 scored epochs of SC4001 (both derivations); no validation set",
        "wall_s": round(wall_s, 1),
        "harness": "bench/generalisation (harness.train_final)",
        **({"selection": selection} if selection else {}),
    }
    return export_student(
        model.net,
        out,
        seq_len=recipe.seq_len,
        mode="split",
        normalisation=spec.to_card(),
        pad=ZERO_EPOCH_PAD,
        card_fields={
            "training": training,
            "rebuild_command": "bash scripts/build_default_student.sh",
            "channels": (
                "one EEG derivation, bipolar or referential (trained on Sleep-EDF Fpz-Cz and "
                "Pz-Oz, and blends of the two); band-limited 0.3-35 Hz is fine, resampled to "
                "100 Hz; amplitude is normalised per recording by the card's normalisation"
            ),
        },
    )
