"""Training windows: what one pass shows the model, and how it is made different each pass.

A :class:`TrainSet` plans the windows of one pass (:meth:`TrainSet.plan`) and cuts them
into batches (:meth:`TrainSet.batch`). Everything random about how a window is shown is
one :class:`Augmentation`: the derivation (channel swap), a time shift, and the signal
augmentations of :mod:`distill.augment`, applied either per window or to whole nights.

Per pass (:meth:`TrainSet.pass_view`), each training night is cut into *sessions* (one
random cut, or sessions of ``session_len`` epochs with a random phase, see
:func:`distill.normalise.session_starts`), as if a recording had started at each; then

- augmented session by session (``Augmentation.where == "night"``: one draw of every
  augmentation per session and derivation, *before* the normaliser, as a new amplifier
  would be), and
- normalised causally (:mod:`distill.normalise`), the normaliser restarting cold at every
  session start, so the model also sees the warm-up.

A window never looks back across a session start: earlier positions are zero, label -1.

Shapes and units: windows are ``x (B, seq, 1, 3000)`` float32 (µV, or µV × the epoch's
normalisation factor) and ``y (B, seq)`` int64 with ``-1`` for masked positions.

Hypnogram-assembled windows (:mod:`distill.assembled`) join the real ones in each pass's
plan (``TrainSet.assembled``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill.assembled import AssembledNights
from distill.augment import AugmentConfig
from distill.augment import augment as apply_augment
from distill.data import Recording, gather_windows
from distill.folds import mask_to_runs
from distill.normalise import session_starts
from sleepstream.errors import UsageError
from sleepstream.types import EPOCH_SAMPLES, N_STAGES, UNSCORED

#: Where the signal augmentations run: on each window, or on each whole night per pass.
AUGMENT_WHERE = ("window", "night")


@dataclass(frozen=True)
class Augmentation:
    """How training windows are varied (stored in every checkpoint's config).

    Attributes
    ----------
    signal : distill.augment.AugmentConfig
        Gain, filter / tilt, 1/f noise, sign flip, time scale, derivation mixing.
    shift : int
        Time shift of the signal against the labels, samples, uniform in ``[-shift, shift]``
        per window.
    channel_swap : bool
        Draw the derivation at random per window (SC4001: Fpz-Cz or Pz-Oz).
    where : {"window", "night"}
        ``window``: ``signal`` augmentations on each window (one draw per window), after
        normalisation. ``night``: on each whole training night and derivation, once per
        pass, before the normaliser (one draw per night).
    """

    signal: AugmentConfig = field(default_factory=AugmentConfig)
    shift: int = 0
    channel_swap: bool = False
    where: str = "window"

    def __post_init__(self) -> None:
        if self.where not in AUGMENT_WHERE:
            raise UsageError(f"augment where {self.where!r}: valid: {', '.join(AUGMENT_WHERE)}")
        if self.shift < 0:
            raise UsageError(f"shift must be >= 0 samples, got {self.shift}")

    @classmethod
    def off(cls) -> Augmentation:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal.to_dict(),
            "shift": self.shift,
            "channel_swap": self.channel_swap,
            "where": self.where,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Augmentation:
        """Read :meth:`to_json`, or the first release's ``{amplitude, shift, noise,
        channel_swap}`` (amplitude → gain, white noise → noise with ``noise_beta`` 0)."""
        if "signal" in d:
            return cls(AugmentConfig.from_dict(d["signal"]), int(d["shift"]),
                       bool(d["channel_swap"]), str(d.get("where", "window")))  # fmt: skip
        amp, noise = float(d.get("amplitude", 1.0)), float(d.get("noise", 0.0))
        sig = AugmentConfig(gain=amp > 1.0, gain_max=max(amp, 1.0), noise=noise > 0,
                            noise_max=noise, noise_beta=(0.0, 0.0))  # fmt: skip
        return cls(sig, int(d.get("shift", 0)), bool(d.get("channel_swap", False)))


# ------------------------------------------------------------------------ class imbalance
def class_weights(labels: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Inverse-frequency class weights ``(5,)`` (``freq ** -power``), mean 1 over present stages."""
    y = np.asarray(labels).ravel()
    counts = np.bincount(y[y != UNSCORED], minlength=N_STAGES).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)


def sample_weights(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-window sampling weight ``(N,)``: mean class weight of the scored positions."""
    y = np.atleast_2d(y)
    w = np.where(y >= 0, weights[np.clip(y, 0, None)], 0.0)
    cnt = (y >= 0).sum(axis=1)
    return np.where(cnt > 0, w.sum(axis=1) / np.maximum(cnt, 1), 0.0)


# ------------------------------------------------------------------------------ pass views
@dataclass(frozen=True)
class PassView:
    """One training night as one pass shows it.

    Attributes
    ----------
    signals : dict of str to ndarray, shape (n_epochs * 3000,), float32, µV
        The derivations (the recording's own arrays, or augmented copies).
    starts : ndarray, shape (n_sessions,), int
        Session starts (first 0): where the normaliser restarted and where history ends.
    scales : dict of str to ndarray, shape (n_epochs,), float32, or None
        Normalisation factor of each epoch (None = raw µV).
    """

    signals: dict[str, np.ndarray]
    starts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    scales: dict[str, np.ndarray] | None = None


# ------------------------------------------------------------------------ training sets
@dataclass(frozen=True)
class TrainSet:
    """Training windows for one pass: real windows inside the train masks plus assembled ones.

    Parameters
    ----------
    recs : list of Recording
    masks : list of ndarray (n_epochs,), bool
        Training epochs per recording; windows never show other epochs.
    seq : int
        Epochs per window (1 for epoch-encoder pre-training).
    stride : int
        Epochs between consecutive window starts inside a contiguous training run (a
        random offset is drawn every pass).
    assembled : AssembledNights, optional
    assembled_ratio : float
        Assembled windows per real window.
    norm : distill.normalise.NightNorm, optional
        Per-recording normalisation applied along each night with a random cut per pass;
        None = raw µV.
    start_windows : float
        Fraction of real windows shown as the daemon sees them at a night start: only the
        last ``h + 1`` positions are kept (``h`` uniform in ``[0, seq - 2]``), the earlier
        ones are zero with label ``-1`` (zero-padded history, as the daemon pads).
    session_len : int
        Sessions per pass when nights are normalised or augmented whole (see
        :func:`distill.normalise.session_starts`): 0 = one random cut per night.
    """

    recs: list
    masks: list
    seq: int
    stride: int = 0
    assembled: AssembledNights | None = None
    assembled_ratio: float = 0.0
    norm: Any = None
    start_windows: float = 0.0
    session_len: int = 0

    def pass_view(
        self, rng: np.random.Generator, augment: Augmentation | None = None
    ) -> list[PassView] | None:
        """Per-recording :class:`PassView` of one pass; None when nights are shown as they
        are (no normalisation, no night-level augmentation)."""
        night_aug = augment is not None and augment.where == "night" and augment.signal.active
        if self.norm is None and not night_aug:
            return None
        views = []
        for r, rec in enumerate(self.recs):
            if not np.asarray(self.masks[r], bool).any():
                views.append(PassView(rec.signals))  # never shown in training
                continue
            starts = session_starts(rec.n_epochs, self.session_len, rng)
            signals = rec.signals
            if night_aug:
                signals = _augment_night(rec, augment.signal, rng, starts)
            if self.norm is None:
                views.append(PassView(signals, starts))
            else:
                _, scales = self.norm.pass_scales(
                    r, rec, rng, signals if night_aug else None, starts
                )
                views.append(PassView(signals, starts, scales))
        return views

    def plan(self, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
        """Items for one pass, shape (M, 2) ``(recording index or -1 = assembled, start)``.

        With ``weights`` (per-class, see :func:`class_weights`) the real windows are drawn
        with replacement in proportion to :func:`sample_weights` (weighted sampler).
        """
        stride = self.stride or self.seq
        items = []
        for r, (rec, mask) in enumerate(zip(self.recs, self.masks, strict=True)):
            for a, b in mask_to_runs(np.asarray(mask, bool) & (rec.labels >= 0)):
                span = b - a - self.seq + 1
                if span <= 0:
                    items.append((r, a))
                    continue
                off = int(rng.integers(min(stride, span)))
                items += [(r, s) for s in range(a + off, b - self.seq + 1, stride)]
        real = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        if weights is not None and len(real):
            ys = np.stack([self._labels(int(r), int(s)) for r, s in real])
            p = sample_weights(ys, weights)
            real = real[rng.choice(len(real), size=len(real), replace=True, p=p / p.sum())]
        n_asm = int(round(self.assembled_ratio * len(real))) if self.assembled else 0
        asm = np.stack([np.full(n_asm, -1), np.zeros(n_asm, np.int64)], axis=1)
        allitems = np.concatenate([real, asm.astype(np.int64)])
        return allitems[rng.permutation(len(allitems))]

    def _labels(self, r: int, s: int) -> np.ndarray:
        rec = self.recs[r]
        idx = s + np.arange(self.seq)
        ok = (idx >= 0) & (idx < rec.n_epochs)
        idx = np.clip(idx, 0, rec.n_epochs - 1)
        return np.where(ok & self.masks[r][idx], rec.labels[idx], UNSCORED)

    def batch(
        self,
        items: np.ndarray,
        rng: np.random.Generator,
        augment: Augmentation | None = None,
        views: Sequence[PassView] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Windows for ``items``: ``x (B, seq, 1, 3000)`` float32, ``y (B, seq)`` int64.

        ``views`` (from :meth:`pass_view`) supplies the pass's signals and normalisation
        factors; a window whose last epoch is at or after its recording's cut shows no
        epoch before the cut. Signal augmentations run here when ``augment.where`` is
        ``"window"``.
        """
        aug = augment or Augmentation.off()
        mix = aug.signal.mix and aug.where == "window"
        xs, ys, others = [], [], []
        n_asm = int((items[:, 0] < 0).sum())
        for r, s in items[items[:, 0] >= 0]:
            r, s = int(r), int(s)
            rec = self.recs[r]
            view = views[r] if views is not None else PassView(rec.signals)
            chans = rec.channels
            ch = chans[int(rng.integers(len(chans)))] if aug.channel_swap else chans[0]
            shift = rng.integers(-aug.shift, aug.shift + 1, 1) if aug.shift else None

            x, y = self._window(r, s, ch, shift, view)
            if mix:
                alts = [c for c in chans if c != ch] or [ch]
                others.append(self._window(r, s, alts[0], shift, view)[0])
            if self.start_windows > 0 and self.seq > 1 and rng.random() < self.start_windows:
                h = int(rng.integers(self.seq - 1))  # history kept: 0 .. seq - 2 epochs
                x[:, : self.seq - 1 - h] = 0.0
                y[:, : self.seq - 1 - h] = UNSCORED
                if mix:
                    others[-1][:, : self.seq - 1 - h] = 0.0
            xs.append(x)
            ys.append(y)
        if n_asm:
            pools = self.assembled.pass_pools(views) if views is not None else None
            x, y, extra = self.assembled.sample(n_asm, self.seq, rng, aug.channel_swap, pools,
                                                others=mix)  # fmt: skip
            xs.append(x)
            ys.append(y)
            if mix:
                others.append(extra.get("other0", x))
        x, y = np.concatenate(xs), np.concatenate(ys)
        if aug.where == "window" and aug.signal.active:
            kw = {"other": np.concatenate(others)} if mix else {}
            x = apply_augment(x, aug.signal, rng, **kw)
        return x, y

    def _window(self, r: int, s: int, ch: str, shift, view: PassView):
        """One window ``(1, seq, 1, 3000)`` of derivation ``ch`` from ``view``, and its labels."""
        x, y = gather_windows(view.signals[ch], self.recs[r].labels, np.array([s]), self.seq,
                              shifts=shift, keep=self.masks[r])  # fmt: skip
        _session_window(x, y, s, view.starts, None if view.scales is None else view.scales[ch])
        return x, y

    def labels(self) -> np.ndarray:
        """All scored training labels (for class weights)."""
        return np.concatenate(
            [
                rec.labels[np.asarray(m, bool) & (rec.labels >= 0)]
                for rec, m in zip(self.recs, self.masks, strict=True)
            ]
        )


def _augment_night(
    rec: Recording, cfg: AugmentConfig, rng: np.random.Generator, starts: np.ndarray
) -> dict:
    """Every derivation of ``rec`` augmented session by session (each session one item:
    one draw of every augmentation); ``mix`` blends in the other derivations of the same
    epochs."""
    bounds = [*map(int, starts), rec.n_epochs]
    out = {ch: np.empty_like(sig) for ch, sig in rec.signals.items()}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        shape = (1, b - a, 1, EPOCH_SAMPLES)
        part = {c: sig[a * EPOCH_SAMPLES : b * EPOCH_SAMPLES].reshape(shape)
                for c, sig in rec.signals.items()}  # fmt: skip
        for ch, x in part.items():
            kw = {f"d{i}": o for i, (c, o) in enumerate(part.items()) if c != ch}
            if cfg.mix and not kw:
                kw = {"self": x}
            seg = apply_augment(x, cfg, rng, **kw)
            out[ch][a * EPOCH_SAMPLES : b * EPOCH_SAMPLES] = seg.reshape(-1)
    return out


def _session_window(
    x: np.ndarray, y: np.ndarray, s: int, starts: np.ndarray, scale: np.ndarray | None
) -> None:
    """Apply one pass's sessions to a gathered window in place (``x (1, seq, 1, 3000)``,
    ``y (1, seq)``): positions before the session of the window's last epoch are zeroed
    and labelled ``-1``; with ``scale`` the rest are multiplied by their epoch's factor."""
    seq = y.shape[1]
    idx = s + np.arange(seq)
    first = int(starts[np.searchsorted(starts, idx[-1], side="right") - 1])
    if scale is None:
        if first > 0 and idx[0] < first:
            before = idx < first
            x[0, before] = 0.0
            y[0, before] = UNSCORED
        return
    ok = (idx >= first) & (idx < scale.shape[0])
    f = np.where(ok, scale[np.clip(idx, 0, scale.shape[0] - 1)], 0.0).astype(np.float32)
    y[0, idx < first] = UNSCORED
    x *= f[None, :, None, None]
