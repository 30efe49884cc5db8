"""Issue 16 acceptance: every input format replays to the same stages, and a 24-hour
recording replays in bounded memory.

Agreement
    SC4001's Fpz-Cz over the scored window (841 epochs, the Sleep-EDF trim) is written,
    in a temporary folder that is deleted afterwards, with each format's own writer
    (:mod:`sleepstream.io.writers`): EDF at 100 Hz (``mne.export``), FIF (``raw.save``),
    BrainVision (``pybv``), EEGLAB (``eeglabio``), EDF at 256 Hz (polyphase-resampled,
    ``mne.export``), a BrainFlow file (``DataFilter.write_file``, Cyton layout, 250 Hz,
    Fpz-Cz in the Fp1 row, replayed with a Cyton profile without filters) and, with
    ``--openbci``, the OpenBCI GUI text format. Each is replayed with ``sleepstream
    replay --speed max --no-trim`` against the same 30-s hypnogram; the stages it
    records are compared epoch by epoch with the replay of the original SC4001 EDF
    (``--speed max``, trimmed to the same window). Tolerance: >= 98 % epoch agreement
    (resampled inputs go through the DSP's causal resampler, the others must agree
    exactly).

Memory
    A 24-hour, 8-channel, 256-Hz EDF (354 MB; SC4001's Fpz-Cz resampled and repeated,
    written with the streaming EDF writer) is replayed whole at ``--speed max`` and the
    replay process's peak RSS is read from ``/proc/<pid>/status`` (``VmHWM``). Goal:
    <= 300 MB.

Run: ``python bench/formats.py [--model PATH] [--openbci] [--skip-rss]`` (about 15 min on
2 busy cores); results go to ``bench/results/formats.json`` and ``formats.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import SC4001  # noqa: E402

PSG = SC4001 / "SC4001E0-PSG.edf"
HYP = SC4001 / "SC4001EC-Hypnogram.edf"
GOAL_AGREEMENT = 0.98
GOAL_RSS_MB = 300.0
_HYP_SYMBOL = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}
CYTON_RAW_PROFILE = """name = "cyton-raw"
description = "Cyton file, Fp1 alone, no filters (bench/formats.py)"
[source]
kind = "board"
board = "cyton"
[signal]
channel = "Fp1"
reference = []
scale_to_uv = 1.0
fs = 250.0
notch_hz = 0
bandpass_hz = []
[quality]
clip_uv = 191.0
clip_fraction = 0.05
amplitude_uv = 500.0
line_noise_ratio = 0.5
"""


def replay(
    path: Path, state: Path, model: Path | None, *extra: str, record: bool = True
) -> tuple[dict, np.ndarray | None, float]:
    """Replay at --speed max (night recorded unless ``record=False``); returns the JSON
    summary, the recorded stages and the replay process's peak RSS in MB."""
    cmd = [sys.executable, "-m", "sleepstream", "replay", str(path), "--speed", "max",
           "--json-summary", "--broker-port", "0", "--state-dir", str(state), *extra]  # fmt: skip
    if not record:
        cmd.append("--no-record")
    if model is not None:
        cmd += ["--model", str(model)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    env["OMP_NUM_THREADS"] = "1"
    with open(state.with_suffix(".out"), "w+") as out, open(state.with_suffix(".err"), "w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.1)
        out.seek(0), err.seek(0)
        text, errors = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"replay of {path.name} failed ({proc.returncode}): {errors[-1500:]}")
    summary = json.loads(text.strip().splitlines()[-1])
    if not record:
        return summary, None, peak_kb / 1024.0
    from sleepstream.report.night import load_night

    night_dir = next((state / "nights").glob("*/*"))
    stages = load_night(night_dir).stages
    return summary, stages, peak_kb / 1024.0


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set of a running process (``VmHWM``), kB; 0 once it has gone.

    Read from ``/proc`` rather than ``wait4``'s ``ru_maxrss``, which also counts the pages
    the child shared with this (large) process between fork and exec.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _size(path: Path) -> int:
    """Bytes of a recording with its sibling files (BrainVision .vhdr/.vmrk/.eeg)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.stem + ".*"))


def write_inputs(folder: Path, x: np.ndarray, start: dt.datetime, openbci: bool) -> dict:
    """Every format of the window ``x`` (µV, 100 Hz); name -> (path, extra replay flags)."""
    from scipy.signal import resample_poly

    from sleepstream.io import writers as w

    names = ["EEG Fpz-Cz"]
    files = {
        "edf-100Hz": (w.write_edf(folder / "edf100.edf", x[None], 100.0, names, start=start), ()),
        "fif": (w.write_fif(folder / "fif_raw.fif", x[None], 100.0, names, start=start), ()),
        "brainvision": (
            w.write_brainvision(folder / "bv.vhdr", x[None], 100.0, names, start=start),
            (),
        ),  # fmt: skip
        "eeglab": (w.write_eeglab(folder / "eeglab.set", x[None], 100.0, names), ()),
    }
    x256 = resample_poly(x, 64, 25)
    files["edf-256Hz"] = (w.write_edf(folder / "night256.edf", x256[None], 256.0, names,
                                      start=start), ())  # fmt: skip
    x250 = resample_poly(x, 5, 2)
    arr = w.board_array("cyton", x250[None], t0=start.replace(tzinfo=dt.UTC).timestamp())
    profile = folder / "cyton-raw.toml"
    profile.write_text(CYTON_RAW_PROFILE)
    flags = ("--profile", str(profile))
    files["brainflow-cyton-250Hz"] = (w.write_brainflow(folder / "BrainFlow-RAW.csv", arr), flags)
    if openbci:
        files["openbci-gui-cyton-250Hz"] = (w.write_openbci(folder / "OpenBCI-RAW.txt", "cyton",
                                                            arr), flags)  # fmt: skip
    return files


def agreement_part(model: Path | None, openbci: bool) -> dict:
    from sleepstream.io import read_sleep_edf, trim_hypnogram
    from sleepstream.scoring import agreement

    night = read_sleep_edf(PSG, HYP, "EEG Fpz-Cz", cache=False)
    hyp = trim_hypnogram(night.hypnogram)
    t0 = float(hyp.onsets[0])
    a, b = int(round(t0 * 100)), int(round((float(hyp.onsets[-1]) + 30.0) * 100))
    x = night.signal[a:b].astype(np.float64)
    start = dt.datetime(1989, 4, 24, 16, 13) + dt.timedelta(seconds=t0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        folder = Path(tmp)
        hyp_file = folder / "window.hyp"
        hyp_file.write_text("\r".join(_HYP_SYMBOL[int(s)] for s in hyp.stages) + "\r")
        t = time.perf_counter()
        ref_summary, ref, _ = replay(PSG, folder / "state-ref", model)
        rows.append({"input": "SC4001 original EDF (reference)", "epochs": int(ref.size),
                     "agreement_with_reference": 1.0, "kappa_vs_expert": ref_summary["kappa"],
                     "seconds": round(time.perf_counter() - t, 1)})  # fmt: skip
        files = write_inputs(folder, x, start, openbci)
        for name, (path, flags) in files.items():
            t = time.perf_counter()
            summary, stages, _ = replay(path, folder / f"state-{name}", model,
                                        "--hypnogram", str(hyp_file), "--no-trim", *flags)  # fmt: skip
            n = min(stages.size, ref.size)
            agree = float(np.mean(stages[:n] == ref[:n])) if n else 0.0
            m = agreement(ref[:n].astype(np.int64), stages[:n].astype(np.int64))
            rows.append({
                "input": name, "file_mb": round(_size(path) / 2**20, 1),
                "epochs": int(stages.size), "agreement_with_reference": round(agree, 4),
                "kappa_with_reference": round(m["kappa"], 4),
                "kappa_vs_expert": summary["kappa"], "seconds": round(time.perf_counter() - t, 1),
                "pass": bool(agree >= GOAL_AGREEMENT and stages.size == ref.size),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return {"goal_agreement": GOAL_AGREEMENT, "rows": rows}


def write_24h_edf(path: Path) -> None:
    """24 h, 8 channels at 256 Hz: SC4001 Fpz-Cz resampled and repeated (354 MB)."""
    from scipy.signal import resample_poly

    from sleepstream.io import open_recording, read_channels
    from sleepstream.io.edf_writer import EdfStreamWriter

    rec = open_recording(PSG)
    x, _ = read_channels(rec, [0])
    hour = 3600 * 100
    labels = ["EEG Fpz-Cz", "EEG Pz-Oz", "EEG C3", "EEG C4", "EOG L", "EOG R", "EMG", "ECG"]
    with EdfStreamWriter(path, labels, 256.0, [(-200.0, 200.0)] * 8,
                         dt.datetime(1989, 4, 24, 16, 13)) as w:  # fmt: skip
        for h in range(24):
            a = (h * hour) % (x.shape[1] - hour)
            block = resample_poly(x[0, a : a + hour], 64, 25)
            w.write(np.repeat(block[None], 8, axis=0))


def rss_part(model: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-formats-24h-") as tmp:
        path = Path(tmp) / "24h-8ch-256Hz.edf"
        write_24h_edf(path)
        t = time.perf_counter()
        summary, _stages, rss = replay(path, Path(tmp) / "state", model, record=False)
        row = {
            "input": "EDF 24 h, 8 ch, 256 Hz", "file_mb": round(path.stat().st_size / 2**20, 1),
            "epochs": int(summary["n_epochs_streamed"]), "peak_rss_mb": round(rss, 1),
            "seconds": round(time.perf_counter() - t, 1), "goal_mb": GOAL_RSS_MB,
            "pass": bool(rss <= GOAL_RSS_MB and summary["n_epochs_streamed"] == 2880),
        }  # fmt: skip
        print(json.dumps(row), flush=True)
        return row


def markdown(result: dict) -> str:
    lines = [
        "# Input formats: same stages from every format, and a 24-hour replay's memory",
        "",
        f"`{result['command']}` on {result['machine']}, {result['date']}; model "
        f"`{result['model']}`. One run (the replay is deterministic).",
        "",
        "| input | epochs | agreement with the EDF replay | kappa vs expert | pass |",
        "|---|---|---|---|---|",
    ]
    for r in result["agreement"]["rows"]:
        lines.append(f"| {r['input']} | {r['epochs']} | {100 * r['agreement_with_reference']:.2f} % "
                     f"| {r['kappa_vs_expert']:.3f} | {'yes' if r.get('pass', True) else 'NO'} |")  # fmt: skip
    lines += [
        "",
        "Tolerance: the 100-Hz formats give the EDF replay's stages exactly; inputs the "
        f"DSP resamples (256 / 250 Hz) agree on >= {100 * GOAL_AGREEMENT:.0f} % of epochs.",
        "",
        "The kappa column is against SC4001's expert hypnogram. SC4001 is the shipped "
        "student's training recording, so that column shows only that the formats agree; "
        "it says nothing about other people's nights (see the DREAMS figures).",
    ]
    if result.get("agreement_from"):
        lines += ["", f"(agreement table from `{result['agreement_from']}`)"]
    if result.get("rss"):
        r = result["rss"]
        lines += ["", f"24-hour replay ({r['input']}, {r['file_mb']} MB, {r['epochs']} epochs, "
                  f"--speed max): peak RSS **{r['peak_rss_mb']} MB** (goal <= {r['goal_mb']:.0f} MB), "
                  f"{r['seconds']} s."]  # fmt: skip
        if result.get("rss_from"):
            lines.append(f"(memory figure from `{result['rss_from']}`)")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="default: the shipped student")
    p.add_argument("--openbci", action="store_true", help="also the OpenBCI GUI text format")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    result = {
        "command": "python bench/formats.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "date": dt.date.today().isoformat(),
        "model": str(args.model or "shipped default student"),
    }
    if not args.skip_agreement:
        result["agreement"] = agreement_part(args.model, args.openbci)
    if not args.skip_rss:
        result["rss"] = rss_part(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "formats.json"
    if previous.is_file():  # a partial run keeps the other part of the last full one
        old = json.loads(previous.read_text())
        for part in ("agreement", "rss"):
            if part not in result and part in old:
                result[part] = old[part]
                result[f"{part}_from"] = old.get(f"{part}_from") or old.get("command")
    previous.write_text(json.dumps(result, indent=2) + "\n")
    if "agreement" in result:
        (args.out / "formats.md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
