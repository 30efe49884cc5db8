"""The night's figure: hypnogram, hypnodensity and spectrogram of the staged channel.

matplotlib is imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.report.night import RecordedNight
from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED

#: Colours per stage (W, N1, N2, N3, REM).
STAGE_COLOURS = ("#f2c14e", "#8ecae6", "#219ebc", "#023047", "#d62828")
#: Hypnogram rows from top to bottom (clinical convention: W on top, N3 at the bottom).
_ROW = {0: 4, 4: 3, 1: 2, 2: 1, 3: 0}
FMAX_HZ = 25.0


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
        power[:, ok] = 10 * np.log10(np.maximum(pxx[:, keep].T, 1e-12))
    return freqs[keep], power


def render_png(
    night: RecordedNight,
    path: str | Path,
    *,
    spectrogram: tuple[np.ndarray, np.ndarray, str] | None = None,
    reference: np.ndarray | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """Draw the figure and save it as PNG.

    Parameters
    ----------
    spectrogram : (freqs, power_db, channel), optional
        From :func:`epoch_spectrogram`; the panel says when it is missing.
    reference : ndarray, shape (n_epochs,), optional
        Reference stages on the night's grid, drawn under the hypnogram.
    summary : dict, optional
        ``statistics`` and ``agreement`` for the title lines.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    m = night.manifest
    hours = (night.onsets - night.onsets[0]) / 3600.0
    edges = np.append(hours, hours[-1] + EPOCH_SECONDS / 3600.0)
    n_panels = 4 if reference is not None else 3
    ratios = [2.2, 2.2, 1.6, 2.6] if reference is not None else [2.2, 1.6, 2.6]
    fig, axes = plt.subplots(
        n_panels,
        1,
        figsize=(13, 2.3 * n_panels + 1.0),
        sharex=True,
        gridspec_kw={"height_ratios": ratios, "hspace": 0.12},
    )

    def hypnogram(ax: Any, stages: np.ndarray, label: str) -> None:
        rows = np.array([_ROW.get(int(s), np.nan) for s in stages], dtype=float)
        ax.step(edges, np.append(rows, rows[-1]), where="post", color="0.25", lw=0.9)
        for k, (s, r) in enumerate(zip(stages, rows, strict=True)):
            if s == 4:
                ax.plot(
                    edges[k : k + 2], [r, r], color=STAGE_COLOURS[4], lw=4, solid_capstyle="butt"
                )
        un = stages == UNSCORED
        for a, b in _runs(un):
            ax.axvspan(edges[a], edges[b], color="0.85", lw=0)
        ax.set_yticks([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])
        ax.set_ylim(-0.5, 4.5)
        ax.set_ylabel(label)
        ax.grid(axis="x", color="0.9")

    hypnogram(axes[0], night.stages, "sleepstream")
    i = 1
    if reference is not None:
        hypnogram(axes[1], np.asarray(reference), "reference")
        i = 2
    ax = axes[i]
    probs = np.nan_to_num(night.probabilities, nan=0.0)
    ax.stackplot(edges[:-1], probs.T, colors=STAGE_COLOURS, step="post", lw=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(
        handles=[Patch(color=c, label=s) for c, s in zip(STAGE_COLOURS, STAGE_NAMES, strict=True)],
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        fontsize=8,
        frameon=False,
        handlelength=1.2,
    )
    ax = axes[i + 1]
    if spectrogram is not None and np.isfinite(spectrogram[1]).any():
        freqs, power, channel = spectrogram
        lo, hi = np.nanpercentile(power, [5, 98])
        mesh = ax.pcolormesh(
            edges,
            np.append(freqs, freqs[-1] + (freqs[1] - freqs[0])),
            power,
            shading="flat",
            cmap="magma",
            vmin=lo,
            vmax=hi,
        )
        ax.set_ylabel(f"{channel}\nHz")
        cax = ax.inset_axes([1.005, 0.0, 0.012, 1.0])
        fig.colorbar(mesh, cax=cax, label="dB µV²/Hz")
    else:
        ax.text(
            0.5,
            0.5,
            "no raw EEG recorded for a spectrogram",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_ylabel("Hz")
    ax.set_xlabel(f"hours since the start of the recording ({_start_label(m)})")
    axes[-1].set_xlim(edges[0], edges[-1])
    title = f"sleepstream · {m.get('device', '?')} · {_start_label(m)} · model {(m.get('model') or {}).get('id') or '?'}"
    lines = [title]
    if summary:
        st = summary.get("statistics") or {}
        if st:
            lines.append(
                f"TST {_f(st.get('total_sleep_time_min'))} min · SE {_f(st.get('sleep_efficiency_pct'))} % · "
                f"SOL {_f(st.get('sleep_onset_latency_min'))} min · WASO {_f(st.get('waso_min'))} min · "
                f"REM latency {_f(st.get('rem_latency_min'))} min · awakenings {st.get('n_awakenings')}"
            )
        ag = summary.get("agreement")
        if ag:
            lines.append(
                f"vs reference: accuracy {100 * ag['accuracy']:.1f} % · macro-F1 "
                f"{100 * ag['macro_f1']:.1f} % · kappa {ag['kappa']:.3f} (n = {ag['n_epochs']})"
            )
    fig.suptitle("\n".join(lines), fontsize=10.5, x=0.06, ha="left", y=0.995)
    fig.subplots_adjust(
        left=0.07, right=0.93, top=1 - 0.055 * len(lines) * 4.5 / (2.3 * n_panels + 1), bottom=0.07
    )
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _start_label(m: dict[str, Any]) -> str:
    s = m.get("start_utc")
    try:
        return dt.datetime.fromisoformat(str(s).replace("Z", "+00:00")).strftime(
            "%Y-%m-%d %H:%M UTC"
        )
    except ValueError:
        return str(s)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))
