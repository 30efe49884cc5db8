"""Two-stage training with one reusable loop (:func:`fit`), as in the official SleepKD code.

Stage 1 (``pretrain``) trains the epoch encoder on single 30-s epochs with the
``epoch_logits`` head; stage 2 (``sequence``) trains the whole model on windows of ``seq``
epochs with ``logits``. Both stages run :func:`fit`, which takes a loss callback
``loss_fn(outputs, batch) -> (loss, logs)``; knowledge distillation plugs its own callback
into the same loop (``batch`` carries ``x``, ``y``, ``epoch`` and ``stage``).

Determinism: :func:`set_determinism` seeds torch, uses deterministic algorithms and one
thread; each training epoch draws its windows and dropout masks from generators seeded by
``(seed, stage, epoch)``, so a resumed run continues exactly where it stopped. Early
stopping watches validation macro-F1 and restores the best weights at the end of a stage.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from distill.checkpoint import load_optimizer, load_weights, read_sidecar, save_checkpoint
from distill.trainset import Augmentation, TrainSet, class_weights
from sleepstream.errors import UsageError

LossFn = Callable[[dict[str, torch.Tensor], dict[str, Any]], tuple[torch.Tensor, dict[str, float]]]
Validator = Callable[[torch.nn.Module], dict[str, Any]]

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule for one stage.

    ``schedule``: ``"none"``, ``"cosine"`` (to ``lr * min_lr_ratio`` over the stage) or
    ``"step"`` (× ``gamma`` every ``step_size`` epochs); ``warmup`` epochs ramp linearly.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 0
    step_size: int = 10
    gamma: float = 0.5
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMISERS:
            raise UsageError(f"optimizer {self.name!r}: valid: {', '.join(OPTIMISERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule {self.schedule!r}: valid: {', '.join(SCHEDULES)}")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")

    def build(self, params) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def lr_at(self, epoch: int, total: int) -> float:
        """Learning rate for training epoch ``epoch`` (0-based) of ``total``."""
        if self.warmup and epoch < self.warmup:
            return self.lr * (epoch + 1) / (self.warmup + 1)
        if self.schedule == "cosine":
            span = max(1, total - self.warmup - 1)
            t = min(1.0, (epoch - self.warmup) / span)
            lo = self.lr * self.min_lr_ratio
            return lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * t))
        if self.schedule == "step":
            return self.lr * self.gamma ** ((epoch - self.warmup) // self.step_size)
        return self.lr


@dataclass(frozen=True)
class StageConfig:
    """One training stage: epochs, batch size, early-stopping patience, optimiser."""

    epochs: int = 20
    batch_size: int = 32
    patience: int = 5
    optim: OptimConfig = field(default_factory=OptimConfig)
    stride: int = 0  # epochs between window starts (0 = seq, non-overlapping)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise UsageError(f"stage needs epochs >= 0 and batch_size >= 1, got {self}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint sidecar)."""

    model: str = "deepsleepnet-teacher"
    model_kwargs: dict = field(default_factory=dict)
    seq_len: int = 20
    seed: int = 0
    pretrain: StageConfig = field(default_factory=lambda: StageConfig(epochs=10, batch_size=64))
    sequence: StageConfig = field(default_factory=lambda: StageConfig(epochs=20, batch_size=16))
    augment: Augmentation = field(default_factory=Augmentation)
    balance: str = "weights"  # "weights" (weighted CE), "sampler" (weighted sampling), "none"
    weight_power: float = 0.5
    assembled_ratio: float = 1.0  # hypnogram-assembled windows per real window (stage 2)
    val_mode: str = "causal"
    val_stride: int = 5  # causal validation: one window per 5 epochs (see make_validator)
    threads: int = 1
    #: ``NormalisationSpec.to_card()`` dict applied along every night (``{"kind": "none"}``).
    normalise: dict = field(default_factory=lambda: {"kind": "none"})
    #: Sessions per pass (epochs) when nights are normalised or augmented whole: the
    #: normaliser restarts at each session start; 0 = one random cut per night and pass.
    session_len: int = 0
    #: Fraction of stage-2 real windows with a short, zero-padded history (night start).
    start_windows: float = 0.0

    def __post_init__(self) -> None:
        if self.balance not in ("weights", "sampler", "none"):
            raise UsageError(f"balance {self.balance!r}: valid: weights, sampler, none")
        if self.seq_len < 1:
            raise UsageError(f"seq_len must be >= 1, got {self.seq_len}")
        if self.session_len < 0:
            raise UsageError(f"session_len must be >= 0 epochs, got {self.session_len}")
        if not 0.0 <= self.start_windows <= 1.0:
            raise UsageError(f"start_windows must be in [0, 1], got {self.start_windows}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_json()
        return d

    #: Fields added after the first release, with the value that means "as before":
    #: left out of :func:`config_tag`-style hashes when at that value.
    NEW_DEFAULTS: ClassVar[dict[str, Any]] = {
        "normalise": {"kind": "none"},
        "session_len": 0,
        "start_windows": 0.0,
    }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        def stage(s: dict) -> StageConfig:
            o = dict(s["optim"])
            o["betas"] = tuple(o["betas"])
            return StageConfig(**{**s, "optim": OptimConfig(**o)})

        return cls(
            **{
                **d,
                "pretrain": stage(d["pretrain"]),
                "sequence": stage(d["sequence"]),
                "augment": Augmentation.from_json(d["augment"]),
            }
        )


def set_determinism(seed: int, threads: int = 1) -> None:
    """Seed torch, force deterministic kernels where possible and use ``threads`` threads."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def cross_entropy(key: str = "logits", weights: np.ndarray | None = None) -> LossFn:
    """Hard-label loss callback on ``outputs[key]`` ``(B, S, 5)``; label ``-1`` is ignored."""
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def loss_fn(outputs: dict[str, torch.Tensor], batch: dict[str, Any]):
        logits = outputs[key]
        y = batch["y"]
        if not (y >= 0).any():
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), weight=w, ignore_index=-1
            )
        return loss, {"ce": float(loss.detach())}

    return loss_fn


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    history: list[dict[str, Any]]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        """What a run records of one training stage."""
        return {
            "best_val_macro_f1": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "wall_s": self.wall_s,
        }


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def fit(
    model: torch.nn.Module,
    train_set: TrainSet,
    loss_fn: LossFn,
    stage: StageConfig,
    *,
    validate: Validator | None = None,
    augment: Augmentation | None = None,
    seed: int = 0,
    stage_name: str = "sequence",
    stage_index: int = 2,
    sampler_weights: np.ndarray | None = None,
    checkpoint_dir: Path | None = None,
    sidecar: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    parameters=None,
) -> FitResult:
    """Train ``model`` on ``train_set`` with ``loss_fn``; early-stop on validation macro-F1.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(outputs, batch) -> (loss, logs)``; ``batch`` has ``x (B, seq, 1, 3000)``
        µV, ``y (B, seq)`` (``-1`` = masked), ``epoch`` (int) and ``stage`` (str).
    validate : callable, optional
        ``validate(model) -> metrics`` with ``macro_f1``; without it the last epoch is kept.
    sampler_weights : ndarray (5,), optional
        Class weights for a weighted sampler (see :meth:`TrainSet.plan`).
    checkpoint_dir : Path, optional
        Writes ``<stage_name>-last`` (with optimiser) after every epoch and
        ``<stage_name>-best``; with ``resume`` an existing ``-last`` is continued.
    parameters : iterable, optional
        Parameters to optimise (default: all of ``model`` that require grad).
    """
    augment = augment or Augmentation.off()
    params = [p for p in (parameters or model.parameters()) if p.requires_grad]
    opt = stage.optim.build(params)
    history: list[dict[str, Any]] = []
    best, best_epoch, bad, start = -math.inf, -1, 0, 0
    best_state = None
    last = best_path = None
    if checkpoint_dir is not None:
        last = Path(checkpoint_dir) / f"{stage_name}-last.safetensors"
        best_path = Path(checkpoint_dir) / f"{stage_name}-best.safetensors"
        if resume and last.is_file():
            meta = read_sidecar(last)
            load_weights(last, model)
            load_optimizer(last, opt, meta)
            st = meta["train_state"]
            history, best, best_epoch, bad = st["history"], st["best"], st["best_epoch"], st["bad"]
            start = st["epoch"] + 1
            if best_path.is_file():
                current = {k: v.clone() for k, v in model.state_dict().items()}
                load_weights(best_path, model)
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                model.load_state_dict(current)
            if st.get("done"):
                start = stage.epochs
    t0 = time.perf_counter()
    for epoch in range(start, stage.epochs):
        if bad > stage.patience:
            break
        rng = np.random.default_rng([seed, stage_index, epoch])
        torch.manual_seed(seed * 10_000 + stage_index * 1_000 + epoch)
        lr = stage.optim.lr_at(epoch, stage.epochs)
        _set_lr(opt, lr)
        items = train_set.plan(rng, sampler_weights)
        # Normalisation cuts and night-level augmentation draw from their own stream, so
        # runs without them draw exactly the windows they drew before these existed.
        views = train_set.pass_view(np.random.default_rng([seed, stage_index, epoch, 1]), augment)
        if train_set.seq == 1 and len(items) % stage.batch_size == 1 and len(items) > 1:
            items = items[:-1]  # BatchNorm cannot train on a batch of one epoch
        model.train()
        n_batches = max(1, math.ceil(len(items) / stage.batch_size))
        bar = tqdm(
            range(n_batches),
            desc=f"{stage_name} {epoch + 1}/{stage.epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.2 if sys.stderr.isatty() else 5.0,
        )
        tot, n_seen, correct, n_lab = 0.0, 0, 0, 0
        log_sums: dict[str, float] = {}
        for b in bar:
            chunk = items[b * stage.batch_size : (b + 1) * stage.batch_size]
            if len(chunk) == 0:
                continue
            x, y = train_set.batch(chunk, rng, augment, views)
            batch = {
                "x": torch.from_numpy(x),
                "y": torch.from_numpy(y),
                "epoch": epoch,
                "stage": stage_name,
            }
            out = model(batch["x"])
            loss, logs = loss_fn(out, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if stage.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, stage.optim.grad_clip)
            opt.step()
            key = "epoch_logits" if stage_name == "pretrain" else "logits"
            with torch.no_grad():
                m = batch["y"] >= 0
                correct += int((out[key].argmax(-1)[m] == batch["y"][m]).sum())
                n_lab += int(m.sum())
            tot += float(loss.detach()) * len(chunk)
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0.0) + float(v) * len(chunk)
            n_seen += len(chunk)
            bar.set_postfix(
                loss=f"{tot / n_seen:.3f}",
                acc=f"{correct / max(n_lab, 1):.3f}",
                **{k: f"{v:.3f}" for k, v in logs.items() if k != "ce"},
            )
        bar.close()
        rec = {
            "epoch": epoch,
            "lr": lr,
            "loss": tot / max(n_seen, 1),
            "train_acc": correct / max(n_lab, 1),
            "wall_s": time.perf_counter() - t0,
            **{f"train_{k}": v / max(n_seen, 1) for k, v in log_sums.items()},
        }
        if validate is not None:
            vm = validate(model)
            rec.update(
                val_macro_f1=vm["macro_f1"], val_accuracy=vm["accuracy"], val_kappa=vm["kappa"]
            )
            metric = vm["macro_f1"]
        else:
            metric = -rec["loss"]
        history.append(rec)
        if metric > best:
            best, best_epoch, bad = metric, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if best_path is not None:
                save_checkpoint(
                    best_path,
                    model,
                    dict(sidecar or {}, stage=stage_name, best_epoch=epoch, best=best),
                )
        else:
            bad += 1
        if progress:
            tqdm.write(
                f"{stage_name} epoch {epoch + 1}/{stage.epochs} loss {rec['loss']:.4f} "
                f"train-acc {rec['train_acc']:.3f}"
                + (
                    f" val-MF1 {rec['val_macro_f1']:.3f} val-acc {rec['val_accuracy']:.3f}"
                    if validate is not None
                    else ""
                )
                + f" lr {lr:.2e} [{rec['wall_s']:.0f} s]"
            )
        if last is not None:
            state = {
                "epoch": epoch,
                "history": history,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
            }
            save_checkpoint(
                last, model, dict(sidecar or {}, stage=stage_name, train_state=state), optimizer=opt
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    if last is not None and last.is_file():
        meta = read_sidecar(last)
        meta["train_state"]["done"] = True
        meta.pop("format", None)
        meta.pop("optimizer", None)
        save_checkpoint(last, model, meta, optimizer=opt)
    return FitResult(best, best_epoch, history, time.perf_counter() - t0)


def fold_masks(recs: Sequence, spans: dict) -> list[np.ndarray]:
    """One boolean epoch mask per recording (all False where ``spans`` omits it)."""
    return [np.asarray(spans.get(r.name, np.zeros(r.n_epochs, bool)), bool) for r in recs]


def run_metadata(cfg: TrainConfig, recs: Sequence, fold, weights: np.ndarray) -> dict:
    """The checkpoint sidecar fields every training run records (model, data, fold)."""
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
        from distill.trainset import AssembledNights

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
        norm = NightNorm.build(recs, cfg.normalise)
        val_recs = [
            normalise_recording(r, cfg.normalise) if m.any() else r
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
):
    """Both stages on ``fold``; returns ``(model, summary)`` and writes ``out_dir/best``.

    Parameters
    ----------
    cfg : TrainConfig
    recs : list of :class:`~distill.data.Recording`
        Recordings the fold's masks refer to (by name).
    fold : :class:`~distill.data.Fold`
        Train masks (training windows) and validation masks (early stopping).
    stage_sequences : list of ndarray, optional
        Real hypnograms for hypnogram-assembled windows in stage 2 (see
        :class:`~distill.data.AssembledNights`); ignored when ``cfg.assembled_ratio`` is 0.
    out_dir : Path, optional
        Checkpoint folder: ``pretrain-{last,best}``, ``sequence-{last,best}`` and ``best``
        (the final model), each ``.safetensors`` + ``.json``.
    """
    from distill import models

    set_determinism(cfg.seed, cfg.threads)
    model = models.build(cfg.model, **cfg.model_kwargs)
    t0 = time.perf_counter()

    data = stage_data(cfg, recs, fold)
    weights = data.weights
    ce_w = weights if cfg.balance == "weights" else None
    samp_w = weights if cfg.balance == "sampler" else None
    sidecar = {**run_metadata(cfg, recs, fold, weights), **(extra_meta or {})}
    common = dict(
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
    if out_dir is not None:
        save_checkpoint(Path(out_dir) / "best.safetensors", model, dict(sidecar, summary=summary))
    return model.eval(), summary
