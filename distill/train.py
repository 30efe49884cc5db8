"""Two-stage training of one model, as in the official SleepKD code.

Stage 1 (``pretrain``) trains the epoch encoder on single 30-s epochs with the
``epoch_logits`` head; stage 2 (``sequence``) trains the whole model on windows of ``seq``
epochs with ``logits``. Both stages run :func:`distill.loop.fit`, which takes a loss
callback ``loss_fn(outputs, batch) -> (loss, logs)``; knowledge distillation plugs its own
callback into the same loop. Configs live in :mod:`distill.config`, where a run executes
(device, precision, processes) in :mod:`distill.runtime`; both are re-exported here.

Determinism: :func:`set_determinism` seeds torch, uses deterministic algorithms and one
thread; each training epoch draws its windows and dropout masks from generators seeded by
``(seed, stage, epoch)``, so a resumed run continues exactly where it stopped. Early
stopping watches validation macro-F1 and restores the best weights at the end of a stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.checkpoint import save_checkpoint
from distill.config import OptimConfig, StageConfig, TrainConfig
from distill.loop import FitResult, LossFn, Validator, cross_entropy, fit
from distill.runtime import Runtime, barrier, is_main, set_determinism
from distill.trainset import TrainSet, class_weights

__all__ = [
    "FitResult",
    "LossFn",
    "OptimConfig",
    "Runtime",
    "StageConfig",
    "StageData",
    "TrainConfig",
    "Validator",
    "cross_entropy",
    "fit",
    "fold_masks",
    "run_metadata",
    "set_determinism",
    "stage_data",
    "train_run",
]


def fold_masks(recs: Sequence, spans: dict) -> list[np.ndarray]:
    """One boolean epoch mask per recording (all False where ``spans`` omits it)."""
    return [np.asarray(spans.get(r.name, np.zeros(r.n_epochs, bool)), bool) for r in recs]


def run_metadata(
    cfg: TrainConfig, recs: Sequence, fold, weights: np.ndarray, runtime: Runtime | None = None
) -> dict:
    """The checkpoint sidecar fields every training run records (model, data, fold, and
    where and when it ran: machine, device, start time)."""
    from datetime import UTC, datetime

    from distill.evaluate import machine

    return {
        "model": cfg.model,
        "model_kwargs": cfg.model_kwargs,
        "seq_len": cfg.seq_len,
        "config": cfg.to_json(),
        "fold": fold.to_json(),
        "datasets": sorted({r.dataset for r in recs}),
        "channels": sorted({c for r in recs for c in r.channels}),
        "class_weights": weights.tolist(),
        # What the model expects at its input; `distill export` copies it into the card's
        # input_contract.normalisation.
        "normalisation": dict(cfg.normalise),
        # The files the model saw (cards list them: replay/report flag a training night).
        "recordings": [
            {"name": name, "sha256": digest, "channels": list(r.channels)}
            for r, m in zip(recs, fold_masks(recs, fold.train), strict=True)
            if m.any()
            for name, digest in r.sources
        ],
        "machine": {**machine(), **(runtime or Runtime()).describe()},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class StageData:
    """Training sets and validators of one run, shared by plain training and distillation.

    Built by :func:`stage_data`: the fold's masks, the class weights, the normalisation
    (per-pass cuts on training nights; validation nights normalised from their start).
    """

    cfg: TrainConfig
    recs: list
    train_m: list
    val_recs: list
    val_m: list
    weights: np.ndarray
    norm: Any = None

    @property
    def has_val(self) -> bool:
        return any(m.any() for m in self.val_m)

    def pretrain_set(self) -> TrainSet:
        """Single epochs of the training masks (stage 1)."""
        return TrainSet(self.recs, self.train_m, seq=1, stride=1, norm=self.norm,
                        session_len=self.cfg.session_len)  # fmt: skip

    def sequence_set(self, stage_sequences: list | None) -> TrainSet:
        """Windows of ``seq_len`` epochs plus hypnogram-assembled ones (stage 2)."""
        from distill.assembled import AssembledNights

        cfg = self.cfg
        asm = None
        if cfg.assembled_ratio > 0 and stage_sequences:
            asm = AssembledNights.from_recordings(stage_sequences, self.recs, self.train_m)
        return TrainSet(
            self.recs,
            self.train_m,
            seq=cfg.seq_len,
            stride=cfg.sequence.stride or cfg.seq_len,
            assembled=asm,
            assembled_ratio=cfg.assembled_ratio if asm else 0.0,
            norm=self.norm,
            start_windows=cfg.start_windows,
            session_len=cfg.session_len,
        )

    def validator(self, seq: int, mode: str, key: str, stride: int = 1) -> Validator | None:
        """Early-stopping validator on the validation masks (None without any)."""
        from distill.evaluate import make_validator

        if not self.has_val:
            return None
        return make_validator(self.val_recs, self.val_m, seq, mode, key, stride=stride)


def stage_data(cfg: TrainConfig, recs: Sequence, fold) -> StageData:
    """The :class:`StageData` of ``cfg`` on ``fold``."""
    from distill.normalise import NightNorm, is_none, normalise_recording

    train_m, val_m = fold_masks(recs, fold.train), fold_masks(recs, fold.val)
    weights = class_weights(TrainSet(recs, train_m, seq=1, stride=1).labels(), cfg.weight_power)
    norm, val_recs = None, list(recs)
    if not is_none(cfg.normalise):
        norm = NightNorm.build(recs, cfg.normalise, [m.any() for m in train_m])
        val_recs = [  # validation scores the first derivation: normalise only it
            normalise_recording(r, cfg.normalise, primary_only=True) if m.any() else r
            for r, m in zip(recs, val_m, strict=True)
        ]
    return StageData(cfg, list(recs), train_m, val_recs, val_m, weights, norm)


def train_run(
    cfg: TrainConfig,
    recs: list,
    fold,
    *,
    stage_sequences: list | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
):
    """Both stages on ``fold``; returns ``(model, summary)`` and writes ``out_dir/best``.

    Parameters
    ----------
    cfg : TrainConfig
    recs : list of :class:`~distill.data.Recording`
        Recordings the fold's masks refer to (by name).
    fold : :class:`~distill.folds.Fold`
        Train masks (training windows) and validation masks (early stopping).
    stage_sequences : list of ndarray, optional
        Real hypnograms for hypnogram-assembled windows in stage 2 (see
        :class:`~distill.assembled.AssembledNights`); ignored when ``cfg.assembled_ratio`` is 0.
    out_dir : Path, optional
        Checkpoint folder: ``pretrain-{last,best}``, ``sequence-{last,best}`` and ``best``
        (the final model), each ``.safetensors`` + ``.json``.
    """
    from distill import models

    rt = runtime or Runtime()
    set_determinism(cfg.seed, cfg.threads, rt.deterministic)
    model = models.build(cfg.model, **cfg.model_kwargs)
    t0 = time.perf_counter()

    data = stage_data(cfg, recs, fold)
    weights = data.weights
    ce_w = weights if cfg.balance == "weights" else None
    samp_w = weights if cfg.balance == "sampler" else None
    sidecar = {**run_metadata(cfg, recs, fold, weights, rt), **(extra_meta or {})}
    common = dict(
        runtime=rt,
        augment=cfg.augment,
        seed=cfg.seed,
        sampler_weights=samp_w,
        checkpoint_dir=out_dir,
        sidecar=sidecar,
        resume=resume,
        progress=progress,
    )
    summary: dict[str, Any] = {}
    if cfg.pretrain.epochs:
        r1 = fit(
            model,
            data.pretrain_set(),
            cross_entropy("epoch_logits", ce_w),
            cfg.pretrain,
            validate=data.validator(1, "causal", "epoch_logits"),
            stage_name="pretrain",
            stage_index=1,
            **common,
        )
        summary["pretrain"] = r1.summary()
    if cfg.sequence.epochs:
        r2 = fit(
            model,
            data.sequence_set(stage_sequences),
            cross_entropy("logits", ce_w),
            cfg.sequence,
            validate=data.validator(cfg.seq_len, cfg.val_mode, "logits", cfg.val_stride),
            stage_name="sequence",
            stage_index=2,
            **common,
        )
        summary["sequence"] = r2.summary()
    summary["wall_s"] = time.perf_counter() - t0
    if out_dir is not None and is_main():  # rank 0 alone writes
        save_checkpoint(Path(out_dir) / "best.safetensors", model, dict(sidecar, summary=summary))
    barrier()  # the others read it only after rank 0 wrote it
    return model.eval(), summary
