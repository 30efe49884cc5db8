"""Augmentations that model what changes between people, montages and amplifiers.

Every augmentation is on or off by its own flag in :class:`AugmentConfig`; numpy only,
deterministic given the ``numpy.random.Generator`` passed in.

Input and what one item is
--------------------------
``x`` is ``(B, S, 1, 3000)`` float32 (µV, or already normalised: every operation is
linear or scale-relative). Each item ``b`` is treated as **one continuous stretch of
recording** of ``S`` consecutive epochs: it gets one draw of every random parameter
(one gain, one filter, one noise spectrum, ...), applied across all its epochs, as a
different amplifier or person would. The same call therefore serves training windows
(``S`` = the model's sequence length) and whole nights (``B = 1``, ``S`` = n epochs).

Augmentations (in the order applied)
------------------------------------
``mix``       derivation mixing: ``(1 - a) * x + a * d`` with ``a ~ U(mix_range)`` and ``d``
              one of the other derivations of the *same epochs* passed as keyword arrays
              (``augment(x_fpz, cfg, rng, pz_oz=x_pz)``); a blend of Fpz-Cz and Pz-Oz is a
              montage the model never saw. Without such arrays ``mix`` raises.
``filter``    random linear filtering, zero-phase, one response per item: a spectral tilt
              ``(f / 10 Hz) ** t``, ``t ~ U(-tilt, tilt)`` (amplitude exponent; held
              constant below 0.5 Hz), times a smooth random equaliser of ``eq_bands``
              log-spaced bands between 0.5 and 40 Hz, each ``U(-eq_db, eq_db)`` dB.
``time_scale`` resampling by ``k ~ U(1 - time_scale, 1 + time_scale)`` around each epoch's
              centre (frequencies scale by ``1/k``: alpha, spindle and delta rhythms differ
              between people by a few percent), reading across epoch borders so labels stay
              on their epochs.
``noise``     additive coloured noise ``1/f ** beta`` (power), ``beta ~ U(noise_beta)``,
              std ``U(0, noise)`` × the item's robust std.
``sign_flip`` the item times -1 with probability 1/2 (electrodes swapped).
``gain``      the item times ``g``, ``log g ~ U(-log gain, log gain)`` (wide: amplifiers,
              impedances and montages differ by factors of several).

Where this sits relative to normalisation
-----------------------------------------
To model a new amplifier faithfully, augment the raw night **before** the causal
normaliser (:func:`sleepstream.dsp.normalise.normalise_night`), which then removes most
of the gain, as the daemon will. A mild ``gain`` after normalisation instead teaches
tolerance to scale errors (the warm-up, a different stage mix).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from sleepstream.errors import UsageError

EPOCH_SAMPLES = 3000
FS_HZ = 100.0
_IQR_TO_STD = 1.3489795003921634


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and their ranges (units in the attribute names).

    Attributes
    ----------
    gain, sign_flip, filter, noise, time_scale, mix : bool
        Turn each augmentation on.
    gain_max : float
        Gain drawn log-uniformly in ``[1 / gain_max, gain_max]`` (> 1).
    tilt : float
        Max |amplitude exponent| of the spectral tilt around 10 Hz.
    eq_bands : int
        Bands of the random equaliser (0 = none).
    eq_db : float
        Max |gain| of each equaliser band, dB.
    noise_max : float
        Max noise std relative to the item's robust std.
    noise_beta : tuple of float
        Range of the noise's spectral exponent (power ∝ 1/f**beta; 0 white, 1 pink, 2 brown).
    time_scale_max : float
        Max relative time-scale change (0.08 = ±8 %).
    mix_range : tuple of float
        Range of the weight ``a`` of the other derivation.
    """

    gain: bool = False
    sign_flip: bool = False
    filter: bool = False
    noise: bool = False
    time_scale: bool = False
    mix: bool = False
    gain_max: float = 4.0
    tilt: float = 0.5
    eq_bands: int = 6
    eq_db: float = 4.0
    noise_max: float = 0.3
    noise_beta: tuple[float, float] = (0.5, 2.0)
    time_scale_max: float = 0.08
    mix_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        checks = (
            ("gain_max", self.gain_max >= 1.0),
            ("tilt", self.tilt >= 0),
            ("eq_bands", self.eq_bands >= 0),
            ("eq_db", self.eq_db >= 0),
            ("noise_max", self.noise_max >= 0),
            ("noise_beta", self.noise_beta[0] <= self.noise_beta[1]),
            ("time_scale_max", 0 <= self.time_scale_max < 0.5),
            ("mix_range", 0 <= self.mix_range[0] <= self.mix_range[1] <= 1),
        )
        for name, ok in checks:
            if not ok:
                raise UsageError(f"augment {name}={getattr(self, name)!r} is out of range")

    #: Names of the on/off flags, in the order they are applied.
    FLAGS = ("mix", "filter", "time_scale", "noise", "sign_flip", "gain")

    @classmethod
    def from_names(cls, names: str | list[str] | tuple[str, ...], **params) -> AugmentConfig:
        """Turn on the named augmentations (``"gain,filter"`` or a list; ``"none"`` = off).

        Raises
        ------
        UsageError
            For a name that is not an augmentation (the message lists the valid ones).
        """
        items = names.split(",") if isinstance(names, str) else list(names)
        items = [s.strip() for s in items if s.strip() and s.strip() != "none"]
        bad = [s for s in items if s not in cls.FLAGS]
        if bad:
            raise UsageError(f"augmentation {bad[0]!r}: valid: none, {', '.join(cls.FLAGS)}")
        kw: dict[str, Any] = {k: True for k in items}
        return cls(**kw, **params)

    @property
    def active(self) -> tuple[str, ...]:
        """The augmentations turned on, in the order applied."""
        return tuple(f for f in self.FLAGS if getattr(self, f))

    def to_dict(self) -> dict:
        """JSON-able form (tuples become lists); ``AugmentConfig(**d)`` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise UsageError(f"augment config: unknown key {bad[0]!r}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def augment(
    x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, **derivations: np.ndarray
) -> np.ndarray:
    """Apply the augmentations turned on in ``cfg`` (new array; ``x`` is not modified).

    Parameters
    ----------
    x : ndarray, shape (B, S, 1, 3000), float32
        Items of ``S`` consecutive epochs (µV or normalised).
    cfg : AugmentConfig
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same output.
    **derivations : ndarray, shape (B, S, 1, 3000)
        Other derivations of the same epochs (e.g. ``pz_oz=...``), used by ``mix``.

    Returns
    -------
    ndarray, shape (B, S, 1, 3000), float32
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[2] != 1 or x.shape[3] != EPOCH_SAMPLES:
        raise UsageError(f"augment: x shape {x.shape}, expected (B, S, 1, {EPOCH_SAMPLES})")
    b, s = x.shape[:2]
    out = x.reshape(b, s * EPOCH_SAMPLES).astype(np.float64)
    if cfg.mix:
        out = _mix(out, x.shape, derivations, cfg, rng)
    if cfg.filter:
        out = _filter(out, cfg, rng)
    if cfg.time_scale:
        out = _time_scale(out, s, cfg, rng)
    if cfg.noise:
        out = out + _coloured_noise(out, cfg, rng)
    if cfg.sign_flip:
        out = out * np.where(rng.random(b) < 0.5, -1.0, 1.0)[:, None]
    if cfg.gain:
        lg = np.log(cfg.gain_max)
        out = out * np.exp(rng.uniform(-lg, lg, b))[:, None]
    return out.reshape(x.shape).astype(np.float32)


def _mix(
    out: np.ndarray,
    shape: tuple[int, ...],
    derivations: dict[str, np.ndarray],
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    if not derivations:
        raise UsageError("augment mix needs another derivation of the same epochs, e.g. pz_oz=...")
    names = sorted(derivations)
    for name in names:
        if np.shape(derivations[name]) != shape:
            raise UsageError(
                f"augment mix: derivation {name!r} shape {np.shape(derivations[name])}, "
                f"expected {shape}"
            )
    b = out.shape[0]
    pick = rng.integers(len(names), size=(b,))
    a = rng.uniform(cfg.mix_range[0], cfg.mix_range[1], size=(b,))
    other = np.stack(
        [
            np.asarray(derivations[names[int(k)]][i], np.float64).reshape(-1)
            for i, k in enumerate(pick)
        ]
    )
    return (1.0 - a)[:, None] * out + a[:, None] * other


def _response(n: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Real, zero-phase amplitude response on the rfft grid of ``n`` samples at 100 Hz."""
    f = np.fft.rfftfreq(n, 1.0 / FS_HZ)
    fc = np.maximum(f, 0.5)
    t = rng.uniform(-cfg.tilt, cfg.tilt)
    log_h = t * np.log(fc / 10.0)
    if cfg.eq_bands:
        centres = np.log(np.geomspace(0.5, 40.0, cfg.eq_bands))
        gains_db = rng.uniform(-cfg.eq_db, cfg.eq_db, cfg.eq_bands)
        log_h = log_h + np.interp(np.log(fc), centres, gains_db) * (np.log(10.0) / 20.0)
    return np.exp(log_h)


def _filter(out: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    n = out.shape[1]
    spec = np.fft.rfft(out, axis=1)
    h = np.stack([_response(n, cfg, rng) for _ in range(out.shape[0])])
    return np.fft.irfft(spec * h, n=n, axis=1)


def _time_scale(
    out: np.ndarray, s: int, cfg: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    b, n = out.shape
    k = rng.uniform(1.0 - cfg.time_scale_max, 1.0 + cfg.time_scale_max, size=(b,))
    t = np.arange(EPOCH_SAMPLES) - (EPOCH_SAMPLES - 1) / 2.0
    centres = np.arange(s) * EPOCH_SAMPLES + (EPOCH_SAMPLES - 1) / 2.0
    grid = np.arange(n)
    res = np.empty_like(out)
    for i in range(b):
        pos = (centres[:, None] + t[None, :] * k[i]).reshape(-1)
        res[i] = np.interp(pos, grid, out[i])  # holds the edge value past either end
    return res


def _coloured_noise(out: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    b, n = out.shape
    q25, q75 = np.percentile(out, [25.0, 75.0], axis=1)
    level = (q75 - q25) / _IQR_TO_STD * rng.uniform(0.0, cfg.noise_max, size=(b,))
    beta = rng.uniform(cfg.noise_beta[0], cfg.noise_beta[1], size=(b,))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / FS_HZ), 0.5)
    white = np.fft.rfft(rng.standard_normal((b, n)), axis=1)
    noise = np.fft.irfft(white * f[None, :] ** (-beta[:, None] / 2.0), n=n, axis=1)
    noise /= noise.std(axis=1, keepdims=True) + 1e-12
    return noise * level[:, None]


#: Named augmentation recipes for ``--augment`` (anything else is a list of names).
AUGMENT_PRESETS: dict[str, dict] = {
    # Close to the first release's default (amplitude x/÷1.2, white noise up to 0.1 of the
    # window's scale); its noise is now scaled by the robust std, drawn with another rng.
    "mild": {
        "gain": True,
        "noise": True,
        "gain_max": 1.2,
        "noise_max": 0.1,
        "noise_beta": (0.0, 0.0),
    },  # fmt: skip
    "none": {},
}
AUGMENT_PRESET_HELP = {
    "mild": "gain x/÷1.2 + white noise <= 0.1 (default)",
    "none": "no signal augmentation",
}
