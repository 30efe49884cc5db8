"""Teacher → TA → student chains: the same distillation stage run once per link.

A *link* (:func:`distil_run`) trains one model (TA or student) with a method's loss
callback plugged into :func:`distill.train.fit`, in the usual two training stages
(epoch-encoder pre-training, then sequence), guided by the frozen models before it.
A *chain* (:func:`run_chain`) composes links with checkpoints in between:

- the teacher is trained with plain CE (:func:`distill.train.train_run`) or loaded;
- methods with an assistant (``takd``, ``dgkd``, ``sleepkd`` with ``chain=True``) train
  the TA from the teacher, then the student from ``[teacher, TA]`` (each method picks
  the guides it uses: the nearest for ``takd``/``sleepkd``, all for ``dgkd``);
- other methods train the student from the teacher directly.

Each model lands in ``<out>/<role>/best.safetensors`` (+ JSON sidecar); an existing
checkpoint is loaded instead of retrained when ``reuse`` is set, so long comparisons
can be resumed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from distill import methods
from distill.checkpoint import load_model, save_checkpoint
from distill.options import parse_value
from distill.runtime import barrier, is_main
from distill.train import (
    Runtime,
    TrainConfig,
    fit,
    run_metadata,
    set_determinism,
    stage_data,
    train_run,
)
from sleepstream.errors import UsageError

ROLES = ("teacher", "ta", "student")


def family_models(family: str) -> dict[str, str | None]:
    """Model names per role (``teacher``, ``ta``, ``student``) of a model family.

    Raises
    ------
    UsageError
        If the family is unknown or lacks a teacher or a student; lists the families.
    """
    from distill.models import MODEL_SPECS

    fams = sorted({s.family for s in MODEL_SPECS.values()})
    by_role = {s.role: s.name for s in MODEL_SPECS.values() if s.family == family}
    if "teacher" not in by_role or "student" not in by_role:
        raise UsageError(f"unknown model family {family!r}; valid families: {', '.join(fams)}")
    return {r: by_role.get(r) for r in ROLES}


@dataclass(frozen=True)
class MethodSpec:
    """A method name plus config overrides, e.g. ``sleepkd:preset=code,phi=linear``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options.items())

    @property
    def key(self) -> str:
        """The method plus only the settings that differ from its defaults, sorted.

        Two specs that train the same loss share one key (``sleepkd`` and
        ``sleepkd:preset=paper``; the order of options does not matter), so a chain's
        checkpoints are found again by any command or row label that asks for it.
        """
        default = dataclasses.asdict(methods.make_config(self.name))
        chosen = dataclasses.asdict(methods.make_config(self.name, **self.options))
        same_type = {  # 0 and 0.0 spell one setting
            k: float(v) if isinstance(default[k], float) and type(v) is int else v
            for k, v in chosen.items()
        }
        diff = sorted(f"{k}={v}" for k, v in same_type.items() if v != default[k])
        return self.name + (":" + ",".join(diff) if diff else "")

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        """Parse ``name[:key=value,...]``; values become bool/int/float where they parse."""
        name, _, rest = text.strip().partition(":")
        methods.get(name)  # unknown name: UsageError listing the valid ones
        opts: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, raw = item.partition("=")
            if not eq:
                raise UsageError(f"method option {item!r} in {text!r}: expected key=value")
            opts[key.strip()] = parse_value(raw.strip())
        methods.make_config(name, **opts)  # validate now, before any training
        return cls(name, opts)


def uses_assistant(spec: MethodSpec) -> bool:
    """Whether the method trains a TA between teacher and student."""
    cls = methods.get(spec.name)
    cfg = methods.make_config(spec.name, **spec.options)
    return bool(cls.uses_assistant and getattr(cfg, "chain", True))


def distil_run(
    cfg: TrainConfig,
    guides: list[torch.nn.Module],
    spec: MethodSpec,
    recs: list,
    fold,
    *,
    stage_sequences: list | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    resume: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``cfg.model`` from ``guides`` with ``spec``'s loss, both stages; one chain link.

    The same two stages as :func:`distill.train.train_run` (same data, class weights,
    augmentation, validation and early stopping), with the distiller's callback as the
    loss and its parameters (student + Φ / regressor) as the optimised set.

    Returns
    -------
    (model, summary) : the trained student in eval mode and the per-stage history.
    """
    from distill import models

    rt = runtime or Runtime()
    set_determinism(cfg.seed, cfg.threads, rt.deterministic)
    student = models.build(cfg.model, **cfg.model_kwargs)
    distiller = methods.build(spec.name, student, guides, **spec.options)
    device = rt.torch_device
    for g in guides:  # the teacher's inference runs where the student trains (each rank
        g.to(device)  # computes its own slice of every batch: sharded like the student)
    distiller.to(device)
    t0 = time.perf_counter()
    data = stage_data(cfg, recs, fold)
    weights = data.weights
    if cfg.balance == "weights":
        distiller.class_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    sidecar = {
        **run_metadata(cfg, recs, fold, weights, rt),
        "distillation": {
            "method": spec.name,
            "options": dict(spec.options),
            "config": dataclasses.asdict(distiller.config),
            "guides": [getattr(g, "model_name", type(g).__name__) for g in guides],
        },
        **(extra_meta or {}),
    }
    common = dict(
        augment=cfg.augment,
        seed=cfg.seed,
        sampler_weights=weights if cfg.balance == "sampler" else None,
        checkpoint_dir=out_dir,
        sidecar=sidecar,
        progress=progress,
        parameters=list(distiller.parameters()),
        runtime=rt,
        state_module=distiller,  # -last checkpoints keep alignment maps: exact resume
        resume=resume,
    )
    loss_fn = distiller.callback()
    summary: dict[str, Any] = {}
    if cfg.pretrain.epochs:
        val1 = data.validator(1, "causal", "epoch_logits")
        r1 = fit(student, data.pretrain_set(), loss_fn, cfg.pretrain, validate=val1,
                 stage_name="pretrain", stage_index=1, **common)  # fmt: skip
        summary["pretrain"] = r1.summary()
    if cfg.sequence.epochs:
        # Distillation validates every causal window (stride 1), as it always has.
        val2 = data.validator(cfg.seq_len, cfg.val_mode, "logits")
        r2 = fit(student, data.sequence_set(stage_sequences), loss_fn, cfg.sequence,
                 validate=val2, stage_name="sequence", stage_index=2, **common)  # fmt: skip
        summary["sequence"] = r2.summary()
    summary["wall_s"] = time.perf_counter() - t0
    if out_dir is not None and is_main():  # rank 0 alone writes
        save_checkpoint(Path(out_dir) / "best.safetensors", student, dict(sidecar, summary=summary))
    barrier()  # the others read it only after rank 0 wrote it
    return student.eval(), summary


def _cached(out_dir: Path | None, reuse: bool) -> torch.nn.Module | None:
    if reuse and out_dir is not None and (Path(out_dir) / "best.safetensors").is_file():
        model, _ = load_model(Path(out_dir) / "best.safetensors")
        return model.eval()
    return None


def train_plain(
    cfg: TrainConfig,
    recs: list,
    fold,
    *,
    out_dir: Path | None,
    reuse: bool = True,
    **kw: Any,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``cfg.model`` with plain CE (teacher, or student from scratch), or reuse it."""
    cached = _cached(out_dir, reuse)
    if cached is not None:
        return cached, {"reused": str(Path(out_dir) / "best.safetensors")}
    return train_run(cfg, recs, fold, out_dir=out_dir, **kw)


def n_params(model: torch.nn.Module) -> int:
    """All parameters (frozen ones too) plus BatchNorm moving statistics (Keras-style count)."""
    from distill.models import count_params

    return int(count_params(model)["n_bn_stats"] + sum(p.numel() for p in model.parameters()))


def load_teacher(path: Path | str) -> torch.nn.Module:
    """A trained teacher from a checkpoint (safetensors + sidecar; never pickle)."""
    model, _ = load_model(Path(path))
    return model.eval()


@dataclass
class ChainResult:
    """The models of one chain and their training summaries (``None`` where absent)."""

    teacher: torch.nn.Module
    student: torch.nn.Module
    ta: torch.nn.Module | None = None
    summaries: dict[str, Any] = field(default_factory=dict)


def run_chain(
    spec: MethodSpec,
    family: str,
    cfg: TrainConfig,
    recs: list,
    fold,
    *,
    out_dir: Path,
    teacher: torch.nn.Module | None = None,
    stage_sequences: list | None = None,
    reuse: bool = True,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    resume: bool = False,
) -> ChainResult:
    """Teacher (trained, loaded or given) → [TA] → student for one method.

    Parameters
    ----------
    spec : MethodSpec
    family : str
        Model family (``deepsleepnet``, ``salient``, ``transformer``, ``tiny``).
    cfg : TrainConfig
        Training settings shared by every link (``cfg.model`` is replaced per role).
    out_dir : Path
        ``teacher/`` (unless given), ``ta/`` and ``student/`` checkpoints go here.
    teacher : nn.Module, optional
        A trained teacher; otherwise ``out_dir/teacher`` is reused or trained.
    runtime : Runtime, optional
        Device, precision, loader, processes of every link.
    resume : bool
        Continue an interrupted link from its ``-last`` checkpoints.
    """
    names = family_models(family)
    kw = dict(stage_sequences=stage_sequences, progress=progress, extra_meta=extra_meta,
              runtime=runtime, resume=resume)  # fmt: skip
    summaries: dict[str, Any] = {}
    if teacher is None:
        teacher, summaries["teacher"] = train_plain(
            replace(cfg, model=names["teacher"]), recs, fold, out_dir=out_dir / "teacher",
            reuse=reuse, **kw,
        )  # fmt: skip
    guides = [teacher]
    ta = None
    if uses_assistant(spec) and names["ta"] is not None:
        ta = _cached(out_dir / "ta", reuse)
        if ta is None:
            ta, summaries["ta"] = distil_run(
                replace(cfg, model=names["ta"]), [teacher], spec, recs, fold,
                out_dir=out_dir / "ta", **kw,
            )  # fmt: skip
        guides.append(ta)
    elif uses_assistant(spec):
        summaries["note"] = (
            f"family {family!r} has no TA model: the student learns from the teacher"
        )
    student = _cached(out_dir / "student", reuse)
    if student is None:
        student, summaries["student"] = distil_run(
            replace(cfg, model=names["student"]), guides, spec, recs, fold,
            out_dir=out_dir / "student", **kw,
        )  # fmt: skip
    return ChainResult(teacher=teacher, student=student, ta=ta, summaries=summaries)
