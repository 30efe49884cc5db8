"""The night's figures: hypnogram (and the reference's), hypnodensity, spectrogram.

One combined PNG (:func:`render_png`) and one SVG per panel for the HTML report
(:func:`render_svgs`). The time axis is the night's clock
(:class:`~sleepstream.report.times.NightTimes`: UTC, or the recording's local time when
its zone is unknown, and it says which), else hours since the start. matplotlib is
imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from sleepstream.report.night import RecordedNight
from sleepstream.report.times import NightTimes
from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED

#: Colours per stage (W, N1, N2, N3, REM).
STAGE_COLOURS = ("#f2c14e", "#8ecae6", "#219ebc", "#023047", "#d62828")
#: Hypnogram rows from top to bottom (clinical convention: W on top, N3 at the bottom).
_ROW = {0: 4, 4: 3, 1: 2, 2: 1, 3: 0}
FMAX_HZ = 25.0
#: (freqs (Hz), power (dB), channel name) from :func:`epoch_spectrogram`.
Spectrogram = tuple[np.ndarray, np.ndarray, str]


def epoch_spectrogram(
    signal: np.ndarray, fs: float, onsets: np.ndarray, fmax: float = FMAX_HZ
) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum of each 30-s epoch.

    Parameters
    ----------
    signal : ndarray, shape (n_samples,)
        µV on the night's timeline (NaN = not recorded).
    fs : float
        Hz.
    onsets : ndarray, shape (n_epochs,)
        Epoch onsets in s from the night start.

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        Hz, up to ``fmax``.
    power_db : ndarray, shape (n_freqs, n_epochs)
        10·log10(µV²/Hz); NaN for an epoch with missing samples.
    """
    from scipy.signal import welch

    n = int(round(EPOCH_SECONDS * fs))
    starts = np.rint(np.asarray(onsets) * fs).astype(np.int64)
    seg = np.full((starts.size, n), np.nan)
    for k, a in enumerate(starts):
        if a >= 0 and a + n <= signal.size:
            seg[k] = signal[a : a + n]
    ok = np.all(np.isfinite(seg), axis=1)
    nper = int(min(n, round(4 * fs)))
    freqs, _ = welch(np.zeros(n), fs=fs, nperseg=nper)
    keep = freqs <= fmax
    power = np.full((int(keep.sum()), starts.size), np.nan)
    if ok.any():
        _, pxx = welch(seg[ok] - seg[ok].mean(axis=1, keepdims=True), fs=fs, nperseg=nper, axis=-1)
        with np.errstate(over="ignore", invalid="ignore"):
            power[:, ok] = 10 * np.log10(np.maximum(pxx[:, keep].T, 1e-12))
    return freqs[keep], power


# ----------------------------------------------------------------------------- panels
def _edges(night: RecordedNight) -> np.ndarray:
    """Epoch edges in hours from the first epoch's onset, shape (n_epochs + 1,)."""
    hours = (night.onsets - night.onsets[0]) / 3600.0
    return np.append(hours, hours[-1] + EPOCH_SECONDS / 3600.0)


def draw_hypnogram(ax: Any, stages: np.ndarray, edges: np.ndarray, label: str) -> None:
    """Step hypnogram (W on top), REM in red, unscored epochs shaded."""
    rows = np.array([_ROW.get(int(s), np.nan) for s in stages], dtype=float)
    ax.step(edges, np.append(rows, rows[-1]), where="post", color="0.25", lw=0.9)
    for a, b in _runs(np.asarray(stages) == 4):
        for k in range(a, b):
            ax.plot(edges[k : k + 2], [3, 3], color=STAGE_COLOURS[4], lw=4, solid_capstyle="butt")
    for a, b in _runs(np.asarray(stages) == UNSCORED):
        ax.axvspan(edges[a], edges[b], color="0.85", lw=0)
    ax.set_yticks([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])
    ax.set_ylim(-0.5, 4.5)
    ax.set_ylabel(label)
    ax.grid(axis="x", color="0.9")


def draw_hypnodensity(ax: Any, probabilities: np.ndarray, edges: np.ndarray) -> None:
    """Stacked stage probabilities per epoch, with a legend at the right."""
    from matplotlib.patches import Patch

    probs = np.clip(np.nan_to_num(probabilities, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    ax.stackplot(edges[:-1], probs.T, colors=STAGE_COLOURS, step="post", lw=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(
        handles=[Patch(color=c, label=s) for c, s in zip(STAGE_COLOURS, STAGE_NAMES, strict=True)],
        loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
        handlelength=1.2,
    )  # fmt: skip


def draw_spectrogram(fig: Any, ax: Any, spectrogram: Spectrogram | None, edges: np.ndarray) -> None:
    """Per-epoch power spectrum (dB) with a colour bar; says so when there is none."""
    if spectrogram is None or not np.isfinite(spectrogram[1]).any() or spectrogram[0].size < 2:
        ax.text(0.5, 0.5, "no raw EEG recorded for a spectrogram", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_ylabel("Hz")
        return
    freqs, power, channel = spectrogram
    lo, hi = np.nanpercentile(power, [5, 98])
    mesh = ax.pcolormesh(
        edges, np.append(freqs, freqs[-1] + (freqs[1] - freqs[0])), power,
        shading="flat", cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1.0,
        rasterized=True,
    )  # fmt: skip
    ax.set_ylabel(f"{channel}\nHz")
    cax = ax.inset_axes([1.005, 0.0, 0.012, 1.0])
    fig.colorbar(mesh, cax=cax, label="dB µV²/Hz")


def clock_axis(ax: Any, times: NightTimes, first_onset_s: float, edges: np.ndarray) -> None:
    """Ticks at round clock times (x is hours from the first epoch) and the axis label."""
    span_h = float(edges[-1] - edges[0])
    ax.set_xlim(edges[0], edges[-1])
    if times.start is None:
        ax.set_xlabel("hours since the start of the recording (its date is unknown)")
        return
    origin = times.start + dt.timedelta(seconds=first_onset_s)
    step_min = next((m for m in (1, 5, 10, 30, 60, 120) if span_h * 60 / m <= 10), 180)
    midnight = origin.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes_in = (origin - midnight).total_seconds() / 60.0
    first = (int(minutes_in // step_min) + 1) * step_min - minutes_in  # minutes after origin
    ticks = np.arange(first, span_h * 60 + 1e-9, step_min) / 60.0
    ax.set_xticks(ticks, [(origin + dt.timedelta(hours=float(h))).strftime("%H:%M") for h in ticks])
    ax.set_xlabel(f"clock time, {times.zone} (night of {origin:%Y-%m-%d})")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- outputs
def render_png(
    night: RecordedNight,
    *,
    times: NightTimes,
    spectrogram: Spectrogram | None = None,
    reference: np.ndarray | None = None,
    title_lines: list[str] | None = None,
) -> bytes:
    """Draw every panel in one figure; return the PNG's bytes.

    Parameters
    ----------
    times : NightTimes
        The night's clock (the time axis and its label).
    spectrogram : (freqs, power_db, channel), optional
        From :func:`epoch_spectrogram`; the panel says when it is missing.
    reference : ndarray, shape (n_epochs,), optional
        Reference stages on the night's grid, drawn under the hypnogram.
    title_lines : list of str, optional
        The figure's title, one line each.
    """
    plt = _pyplot()
    edges = _edges(night)
    ratios = [2.2, 2.2, 1.6, 2.6] if reference is not None else [2.2, 1.6, 2.6]
    fig, axes = plt.subplots(
        len(ratios), 1, figsize=(13, 2.3 * len(ratios) + 1.0), sharex=True,
        gridspec_kw={"height_ratios": ratios, "hspace": 0.12},
    )  # fmt: skip
    draw_hypnogram(axes[0], night.stages, edges, "sleepstream")
    if reference is not None:
        draw_hypnogram(axes[1], np.asarray(reference), edges, "reference")
    draw_hypnodensity(axes[-2], night.probabilities, edges)
    draw_spectrogram(fig, axes[-1], spectrogram, edges)
    clock_axis(axes[-1], times, float(night.onsets[0]), edges)
    lines = title_lines or []
    fig.suptitle("\n".join(lines), fontsize=10.5, x=0.06, ha="left", y=0.995)
    top = 1 - 0.055 * max(1, len(lines)) * 4.5 / (2.3 * len(ratios) + 1)
    fig.subplots_adjust(left=0.07, right=0.93, top=top, bottom=0.07)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buf.getvalue()


def render_svgs(
    night: RecordedNight,
    *,
    times: NightTimes,
    spectrogram: Spectrogram | None = None,
    reference: np.ndarray | None = None,
) -> dict[str, str]:
    """One self-contained SVG per panel (``hypnogram``, ``hypnodensity``,
    ``spectrogram``), each with its own clock axis, for the HTML report."""
    plt = _pyplot()
    edges = _edges(night)
    first = float(night.onsets[0])

    def svg(height: float, draw: Callable[[Any, Any], None], n_axes: int = 1) -> str:
        buf = io.StringIO()
        with plt.rc_context({"font.size": 11, "svg.fonttype": "none"}):  # text stays text
            fig, axes = plt.subplots(n_axes, 1, figsize=(8, height), sharex=True, squeeze=False)
            try:
                draw(fig, axes[:, 0])
                clock_axis(axes[-1, 0], times, first, edges)
                fig.subplots_adjust(
                    left=0.12, right=0.88, top=0.95, bottom=0.24 if n_axes == 1 else 0.15
                )
                fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
            finally:
                plt.close(fig)
        text = buf.getvalue()
        return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE

    def hyp(fig: Any, axes: Any) -> None:
        draw_hypnogram(axes[0], night.stages, edges, "sleepstream")
        if reference is not None:
            draw_hypnogram(axes[1], np.asarray(reference), edges, "reference")

    n_hyp = 2 if reference is not None else 1
    return {
        "hypnogram": svg(2.2 * n_hyp + 0.6, hyp, n_hyp),
        "hypnodensity": svg(2.4, lambda f, a: draw_hypnodensity(a[0], night.probabilities, edges)),
        "spectrogram": svg(3.0, lambda f, a: draw_spectrogram(f, a[0], spectrogram, edges)),
    }
