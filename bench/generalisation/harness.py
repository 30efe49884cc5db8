"""Recipe experiments for issue 11: train on SC4001 only, select on an SC4001 proxy, score DREAMS.

This is an experiment harness (fast iteration over recipes); the chosen recipe is then run
through the product (``distill train`` / ``distill distill``) for the shipped model.

Data flow of one training pass
------------------------------
The training epochs of a derivation are cut into random *sessions* (contiguous runs of
``session_len`` epochs inside the training mask). Each session is one continuous stretch
of recording: it is augmented as one item (:func:`distill.augment.augment`, one amplifier
draw), then normalised causally from its own start with the daemon's code
(:func:`sleepstream.dsp.normalise.normalise_night`, cold start, prior = reference), then
optionally given a residual gain. Stage 1 trains the epoch encoder on its epochs; stage 2
(``seq_len > 0``) trains the sequence head on causal windows ending at every epoch of the
session, zero-padded before the session start (the windows the daemon sees at the start of
a night), with the encoder frozen (split form: the head reads per-epoch states).

Proxy v3 (model selection; SC4001 alone, never DREAMS)
------------------------------------------------------
``cross-derivation``, both directions (Fpz-Cz -> Pz-Oz, Pz-Oz -> Fpz-Cz), 4 contiguous time
blocks: fold (direction A->B, j) trains on derivation A minus block j (and a guard of 20
epochs on each side) for the recipe's fixed number of passes, and scores derivation B
block j. Held-out blocks are cut into 60-epoch "excerpts" (30 min, like DREAMS) scored
causally from a cold start (normaliser restarted, history zero-padded). The proxy score is
Cohen's kappa pooled over the 841 scored epochs of a direction, averaged over both
directions. It is derivation-disjoint and time-disjoint but same night and same subject;
derivation mixing cannot be judged by it (mixing would show the scored derivation in
training), so the proxy runs with mixing off.
Proxy-T: the same held-out excerpts are also scored after one "new recording" transform
each (:func:`new_recording_transform`: gain ×0.4–2.5, an amplifier's causal high- and
low-pass, a noise floor; a fixed seed, so every recipe sees the same transforms, and a
distribution independent of the training augmentations'), because the cross-derivation
proxy keeps the person, amplifier and gain and so under-rewards what normalisation is for.
The selection score is the mean of the proxy and proxy-T kappas (v3, decided before any
DREAMS figure; v2 rows lack proxy-T).
There is no validation set and no early stopping: the number of passes is part of the
recipe (chosen on this proxy), and the last (or weight-averaged, ``ema``) model is kept.
Proxy v1 (early stopping on derivation B's next block, training on 2 of 4 blocks) gave a
seed sd of ~0.07 kappa and was abandoned after round 1 (rows kept in
``ledger-proxy-v1.jsonl``).

DREAMS (test set): a *final* model per recipe and seed is trained on all of SC4001 (both
derivations unless the recipe says otherwise) with the same recipe, then scored once on
the 8 excerpts, causal, pooled over 480 epochs. Nothing derived from DREAMS is written
except metrics. Exploration looks only at the proxy; DREAMS is scored for every recipe in
one batch after the shipped recipe is frozen.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.augment import AugmentConfig, augment
from distill.data import load_dreams_recordings, load_sc4001_recording
from distill.models import build
from sleepstream.dsp.normalise import NormalisationSpec, normalise_night, usable_epochs
from sleepstream.scoring import agreement

SAMPLES = 3000
DERIVATIONS = ("EEG Fpz-Cz", "EEG Pz-Oz")
PROXY_BLOCKS = 4
GUARD = 20
EXCERPT = 60
#: Seed of the proxy-T "new recording" transforms (fixed: every recipe sees the same ones).
NEW_RECORDING = 20261129


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training recipe (stored in the ledger)."""

    name: str
    model: str = "deepsleepnet-student"
    model_kwargs: dict = field(default_factory=dict)
    normalise: dict = field(default_factory=lambda: {"kind": "running-robust-scale"})
    augment: dict = field(default_factory=dict)  # AugmentConfig fields
    post_gain: float = 1.0  # residual log-uniform gain after normalisation (>= 1)
    session_len: tuple[int, int] = (20, 240)
    # stage 1: epoch encoder
    epochs1: int = 30
    lr1: float = 1e-3
    wd1: float = 1e-2
    batch1: int = 64
    balance: float = 0.5  # class weights freq**-balance (0 = none)
    label_smoothing: float = 0.0
    # stage 2: sequence head on frozen states (0 = epoch-only model)
    seq_len: int = 0
    epochs2: int = 15
    lr2: float = 1e-3
    wd2: float = 1e-2
    batch2: int = 64
    loss_last_only: bool = True
    ema: float = 0.0  # per-step decay of a weight average kept as the model (0 = last weights)
    head_augment: dict = field(default_factory=dict)  # extra augmentations in stage-2 passes
    final_derivations: tuple[str, ...] = DERIVATIONS
    extra_wake: int = 0  # epochs of the untrimmed recording added on each side of the night

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------- data
@dataclass
class Night:
    """One derivation of one night: raw epochs (n, 3000) µV and labels (n,)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    others: dict[str, np.ndarray] = field(default_factory=dict)  # same epochs, other derivations
    #: the whole recording (untrimmed) and where the trimmed night lies in it
    full: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], int] | None = None


def sc4001_nights(data_dir: Path) -> dict[str, Night]:
    """The trimmed night (841 epochs) per derivation, each with its untrimmed recording."""
    from sleepstream.io.processing import trim_wake
    from sleepstream.io.readers import read_sleep_edf

    d = Path(data_dir)
    full = {
        ch: read_sleep_edf(d / "SC4001E0-PSG.edf", d / "SC4001EC-Hypnogram.edf", ch, fs=100)
        for ch in DERIVATIONS
    }
    off = int(round(trim_wake(full[DERIVATIONS[0]]).meta["trim_offset_s"] / 30.0))
    xs = {ch: n.epochs().astype(np.float32) for ch, n in full.items()}
    y_full = np.asarray(full[DERIVATIONS[0]].stages, np.int64)
    rec = load_sc4001_recording(data_dir, DERIVATIONS)
    n = rec.n_epochs
    out = {}
    for ch in DERIVATIONS:
        if not np.array_equal(xs[ch][off : off + n], rec.signals[ch].reshape(-1, SAMPLES)):
            raise RuntimeError("untrimmed and trimmed SC4001 disagree")
        key = {c: c.split()[-1].replace("-", "_").lower() for c in DERIVATIONS}
        others_full = {key[c]: xs[c] for c in DERIVATIONS if c != ch}
        others = {k: v[off : off + n] for k, v in others_full.items()}
        out[ch] = Night(
            f"SC4001/{ch}",
            xs[ch][off : off + n],
            rec.labels.copy(),
            others,
            (xs[ch], y_full, others_full, off),
        )
    return out


def extended(night: Night, extra: int) -> tuple[Night, int]:
    """The night with ``extra`` more epochs of the recording on each side (wake, as scored
    by the experts) and the index of the trimmed night's first epoch in it."""
    if extra <= 0 or night.full is None:
        return night, 0
    x, y, others, off = night.full
    a, b = max(0, off - extra), min(len(y), off + len(night.y) + extra)
    ext = Night(night.name, x[a:b], y[a:b], {k: v[a:b] for k, v in others.items()})
    return ext, off - a


def dreams_nights(data_dir: Path) -> list[Night]:
    """The 8 excerpts, read in place (never cached or copied)."""
    return [
        Night(r.name, r.primary.reshape(-1, SAMPLES), r.labels.copy())
        for r in load_dreams_recordings(data_dir)
    ]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask, [False]])
    e = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(e[::2], e[1::2], strict=True)]


def block_bounds(n: int, k: int = PROXY_BLOCKS) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def proxy_folds(
    n: int, core: tuple[int, int] | None = None
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """(train mask, test block) per time block j of the trimmed night ``core`` (default all
    ``n`` epochs): train = every epoch but block j and a guard of 20 on each side."""
    c0, c1 = core or (0, n)
    out = []
    for a, b in block_bounds(c1 - c0):
        a, b = a + c0, b + c0
        train = np.ones(n, bool)
        train[max(0, a - GUARD) : min(n, b + GUARD)] = False
        out.append((train, (a, b)))
    return out


# ----------------------------------------------------------------------- session sampling
def _sessions(mask: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> list:
    out = []
    for a, b in runs(mask):
        s = a
        while s < b:
            length = int(rng.integers(lo, hi + 1))
            out.append((s, min(b, s + length)))
            s += length
    return out


def pass_data(
    nights: list[tuple[Night, np.ndarray]],
    recipe: Recipe,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One pass: per session, (normalised epochs (L, 3000) float32, labels (L,))."""
    cfg = AugmentConfig.from_dict(recipe.augment) if recipe.augment else AugmentConfig()
    spec = NormalisationSpec.from_card(recipe.normalise)
    out = []
    for night, mask in nights:
        for a, b in _sessions(mask, *recipe.session_len, rng):
            x = night.x[a:b]
            c = cfg if (night.others or not cfg.mix) else replace(cfg, mix=False)
            if c.active:
                others = {k: v[a:b][None, :, None, :] for k, v in night.others.items()}
                x = augment(x[None, :, None, :], c, rng, **(others if c.mix else {}))[0, :, 0]
            xn = normalise_night(x, usable_epochs(x), spec)
            if recipe.post_gain > 1.0:
                lg = math.log(recipe.post_gain)
                xn = xn * np.float32(math.exp(rng.uniform(-lg, lg)))
            out.append((xn, night.y[a:b]))
    return out


def eval_sessions(
    night: Night,
    blocks: list[tuple[int, int]],
    spec: NormalisationSpec,
    new_recording: int | None = None,
):
    """Cold-started 60-epoch excerpts of the given blocks: [(normalised x, labels)].

    With ``new_recording`` (a seed), each excerpt is first passed through one draw of
    :func:`new_recording_transform` (seeded by ``new_recording`` and the excerpt's start,
    so every recipe and seed sees the same transforms)."""
    out = []
    for a, b in blocks:
        for s in range(a, b, EXCERPT):
            e = min(b, s + EXCERPT)
            x = night.x[s:e]
            if new_recording is not None:
                x = new_recording_transform(x, np.random.default_rng([new_recording, s]))
            out.append((normalise_night(x, usable_epochs(x), spec), night.y[s:e]))
    return out


def new_recording_transform(x_uv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What another person / amplifier changes, for the proxy-T score (fixed distribution,
    independent of the training augmentations' implementation and ranges).

    One draw per excerpt ``(L, 3000)`` µV: gain log-uniform in [0.4, 2.5]; the amplifier's
    causal filters, a 1st-order Butterworth high-pass at U(0.1, 0.7) Hz and a 2nd-order
    low-pass at U(20, 45) Hz; a white noise floor of U(0, 2) µV rms (after the gain).
    """
    from scipy.signal import butter, sosfilt

    g = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    hp = butter(1, rng.uniform(0.1, 0.7), "highpass", fs=100.0, output="sos")
    lp = butter(2, rng.uniform(20.0, 45.0), "lowpass", fs=100.0, output="sos")
    flat = sosfilt(lp, sosfilt(hp, x_uv.reshape(-1).astype(np.float64)))
    flat = g * flat + rng.normal(0.0, rng.uniform(0.0, 2.0), flat.shape)
    return flat.reshape(x_uv.shape).astype(np.float32)


# ----------------------------------------------------------------------------- model
class Model:
    """A registry model used as encoder (stage 1) + sequence head on frozen states (stage 2)."""

    def __init__(self, recipe: Recipe, seed: int):
        torch.manual_seed(seed)
        self.net = build(recipe.model, **recipe.model_kwargs)
        self.recipe = recipe

    def epoch_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_epochs(x[:, None, None, :])["epoch_logits"][:, 0]

    @torch.no_grad()
    def states(self, x: np.ndarray) -> torch.Tensor:
        self.net.eval()
        xs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        return torch.cat(
            [self.net.epoch_state(xs[i : i + 256, None]) for i in range(0, len(xs), 256)]
        )

    def pad_state(self) -> torch.Tensor:
        return self.states(np.zeros((1, SAMPLES), np.float32))

    def head(self, states: torch.Tensor) -> torch.Tensor:
        return self.net.sequence_logits(states)


def windows_of(states: torch.Tensor, seq: int, pad_state: torch.Tensor) -> torch.Tensor:
    """(L, D) -> (L, seq, D): causal windows ending at each row; before row 0 the state of
    an all-zero epoch (what the product's zero-padded windows give)."""
    pad = torch.cat([pad_state.expand(seq - 1, -1), states])
    return pad.unfold(0, seq, 1).permute(0, 2, 1)


@torch.no_grad()
def predict(model: Model, sessions, stage: int) -> tuple[np.ndarray, np.ndarray]:
    ys, ps = [], []
    model.net.eval()
    for x, y in sessions:
        if stage == 1:
            xs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            logits = torch.cat(
                [model.epoch_logits(xs[i : i + 256]) for i in range(0, len(xs), 256)]
            )
        else:
            w = windows_of(model.states(x), model.recipe.seq_len, model.pad_state())
            logits = model.head(w)[:, -1]
        ps.append(logits.argmax(-1).numpy())
        ys.append(y)
    y, p = np.concatenate(ys), np.concatenate(ps)
    keep = y >= 0
    return y[keep], p[keep]


def class_weights(y: np.ndarray, power: float) -> torch.Tensor:
    c = np.bincount(y[y >= 0], minlength=5).astype(float)
    w = np.where(c > 0, np.maximum(c, 1) ** -power, 0.0)
    return torch.tensor(w / w[c > 0].mean(), dtype=torch.float32)


def _opt(params, lr: float, wd: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _cosine(opt, base: float, i: int, n: int) -> None:
    lr = base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / max(1, n))))
    for g in opt.param_groups:
        g["lr"] = lr


class _Ema:
    """Exponential moving average of a model's floating-point state (parameters and BN stats)."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


def _epoch_pass(model, recipe, opt, params, x, y, weights, rng, ema) -> None:
    order = rng.permutation(len(y))
    model.net.train()
    for b in range(0, len(order), recipe.batch1):
        idx = order[b : b + recipe.batch1]
        if len(idx) < 2:
            continue
        logits = model.epoch_logits(torch.from_numpy(x[idx]))
        loss = torch.nn.functional.cross_entropy(
            logits,
            torch.from_numpy(y[idx]).long(),
            weight=weights,
            label_smoothing=recipe.label_smoothing,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if ema is not None:
            ema.update(model.net)


def _head_pass(model, recipe, opt, params, w, yy, weights, rng, ema) -> None:
    order = torch.from_numpy(rng.permutation(len(w)))
    model.net.train()
    _freeze_encoder_bn(model.net)
    for b in range(0, len(order), recipe.batch2):
        idx = order[b : b + recipe.batch2]
        if len(idx) < 2:
            continue
        logits, target = model.head(w[idx]), yy[idx]
        if recipe.loss_last_only:
            logits, target = logits[:, -1], target[:, -1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 5),
            target.reshape(-1),
            weight=weights,
            ignore_index=-1,
            label_smoothing=recipe.label_smoothing,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if ema is not None:
            ema.update(model.net)


def train(recipe: Recipe, seed: int, train_nights: list[tuple[Night, np.ndarray]]) -> Model:
    """Stage 1 (epoch encoder) for ``epochs1`` passes, then stage 2 (head on frozen states)
    for ``epochs2`` passes when ``seq_len > 0``; the last (or weight-averaged) model is kept:
    no validation set, no early stopping."""
    torch.set_num_threads(1)
    model = Model(recipe, seed)
    ys = np.concatenate([n.y[m] for n, m in train_nights])
    weights = class_weights(ys, recipe.balance) if recipe.balance > 0 else None
    params = [p for n, p in model.net.named_parameters() if _is_encoder(n)]
    opt = _opt(params, recipe.lr1, recipe.wd1)
    ema = _Ema(model.net, recipe.ema) if recipe.ema > 0 else None
    for i in range(recipe.epochs1):
        rng = np.random.default_rng([seed, 1, i])
        torch.manual_seed(seed * 1000 + i)
        _cosine(opt, recipe.lr1, i, recipe.epochs1)
        data = pass_data(train_nights, recipe, rng)
        x = np.concatenate([d[0] for d in data])
        y = np.concatenate([d[1] for d in data])
        keep = y >= 0
        _epoch_pass(model, recipe, opt, params, x[keep], y[keep], weights, rng, ema)
    if ema is not None:
        model.net.load_state_dict(ema.state)
    if recipe.seq_len <= 0:
        return model
    hparams = [p for n, p in model.net.named_parameters() if not _is_encoder(n)]
    opt = _opt(hparams, recipe.lr2, recipe.wd2)
    ema = _Ema(model.net, recipe.ema) if recipe.ema > 0 else None
    seq = recipe.seq_len
    recipe2 = replace(recipe, augment={**recipe.augment, **recipe.head_augment})
    for i in range(recipe.epochs2):
        rng = np.random.default_rng([seed, 2, i])
        torch.manual_seed(seed * 1000 + 500 + i)
        _cosine(opt, recipe.lr2, i, recipe.epochs2)
        ws, yw = [], []
        pad_state = model.pad_state()
        for x, y in pass_data(train_nights, recipe2, rng):
            ws.append(windows_of(model.states(x), seq, pad_state))
            yp = np.concatenate([np.full(seq - 1, -1), y])
            yw.append(np.lib.stride_tricks.sliding_window_view(yp, seq))
        yy = torch.from_numpy(np.concatenate(yw)).long()
        _head_pass(model, recipe, opt, hparams, torch.cat(ws), yy, weights, rng, ema)
    if ema is not None:
        model.net.load_state_dict(ema.state)
    return model


_HEAD_PREFIXES = ("lstm", "residual", "seq_head", "seq_drop", "lstm_drop", "seq_", "head_")


def _is_encoder(name: str) -> bool:
    return not name.startswith(_HEAD_PREFIXES)


def _freeze_encoder_bn(net: torch.nn.Module) -> None:
    for name, mod in net.named_modules():
        if name and _is_encoder(name) and isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()
        if name and _is_encoder(name) and isinstance(mod, torch.nn.Dropout):
            mod.eval()


# --------------------------------------------------------------------------- protocols
def run_proxy(recipe: Recipe, seed: int, sc: dict[str, Night]) -> dict[str, Any]:
    """Proxy v3: per direction A->B and block j, train on A minus block j (guard 20 epochs
    each side), score B block j as cold-started 60-epoch excerpts; pooled over the 4 blocks.
    Also scored after one "new recording" transform per excerpt (proxy-T). The selection
    score is the mean of the proxy and proxy-T kappas."""
    spec = NormalisationSpec.from_card(recipe.normalise)
    stage = 2 if recipe.seq_len > 0 else 1
    per_dir, per_dir_t = {}, {}
    for a, b in (DERIVATIONS, DERIVATIONS[::-1]):
        A, B = sc[a], sc[b]
        Ax, off = extended(A, recipe.extra_wake)
        A_only = Night(Ax.name, Ax.x, Ax.y, {})  # no mixing under this proxy
        ys, ps, pts = [], [], []
        for train_mask, tblock in proxy_folds(len(Ax.y), (off, off + len(A.y))):
            model = train(recipe, seed, [(A_only, train_mask)])
            tb = (tblock[0] - off, tblock[1] - off)
            y, p = predict(model, eval_sessions(B, [tb], spec), stage)
            _, pt = predict(model, eval_sessions(B, [tb], spec, new_recording=NEW_RECORDING), stage)
            ys.append(y)
            ps.append(p)
            pts.append(pt)
        y = np.concatenate(ys)
        per_dir[f"{a}->{b}"] = agreement(y, np.concatenate(ps))
        per_dir_t[f"{a}->{b}"] = agreement(y, np.concatenate(pts))
    kappas = [m["kappa"] for m in per_dir.values()]
    mf1s = [m["macro_f1"] for m in per_dir.values()]
    kt = [m["kappa"] for m in per_dir_t.values()]
    return {
        "proxy": "v3",
        "proxy_kappa": float(np.mean(kappas)),
        "proxy_macro_f1": float(np.mean(mf1s)),
        "proxy_accuracy": float(np.mean([m["accuracy"] for m in per_dir.values()])),
        "proxy_t_kappa": float(np.mean(kt)),
        "proxy_t_macro_f1": float(np.mean([m["macro_f1"] for m in per_dir_t.values()])),
        "selection": float((np.mean(kappas) + np.mean(kt)) / 2),
        "directions": {k: _short(m) for k, m in per_dir.items()},
        "directions_t": {k: _short(m) for k, m in per_dir_t.items()},
    }


def train_final(recipe: Recipe, seed: int, sc: dict[str, Night]) -> Model:
    """The final model: all of SC4001 (the recipe's derivations), no validation, no early
    stopping (reads SC4001 only: the shipped model's build uses exactly this)."""
    both = len(recipe.final_derivations) > 1  # mixing only with both derivations in training
    nights = []
    for ch in recipe.final_derivations:
        n, _ = extended(sc[ch], recipe.extra_wake)
        nights.append((Night(n.name, n.x, n.y, n.others if both else {}), np.ones(len(n.y), bool)))
    return train(recipe, seed, nights)


def run_final_dreams(
    recipe: Recipe, seed: int, sc: dict[str, Night], dreams: list[Night]
) -> tuple[Model, dict[str, Any]]:
    """Final model on all of SC4001 (:func:`train_final`), scored once on DREAMS."""
    spec = NormalisationSpec.from_card(recipe.normalise)
    model = train_final(recipe, seed, sc)
    stage = 2 if recipe.seq_len > 0 else 1
    sessions = [(normalise_night(d.x, usable_epochs(d.x), spec), d.y) for d in dreams]
    y, p = predict(model, sessions, stage)
    return model, agreement(y, p)


def _short(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "kappa": m["kappa"],
        "per_stage_f1": m["per_stage_f1"],
        "n_epochs": m["n_epochs"],
    }


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0
