"""``distill compare`` / ``distill ablate`` write the table JSON + Markdown (tiny models)."""

from __future__ import annotations

import json

import pytest

from distill.cli import main

FAST = ["--family", "tiny", "--quick", "--pretrain-epochs", "1", "--epochs", "1",
        "--seq-len", "3", "--pretrain-batch-size", "256", "--batch-size", "64",
        "--assembled-ratio", "0", "--channels", "EEG Fpz-Cz", "--no-progress",
        "--mode", "causal", "--seeds", "2"]  # fmt: skip


def _trained(out: str) -> list[tuple[str, int]]:
    """(row, seed) of the units a compare run trained, from its progress lines."""
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"row"')]
    return [(r["row"], r["seed"]) for r in rows]


@pytest.mark.slow
def test_compare_writes_mean_and_sd_over_seeds_and_resumes(shared_data, tmp_path, capsys,
                                                           monkeypatch):  # fmt: skip
    """Two seeds, two methods: rows scratch/kd/sleepkd/teacher/TA with mean ± sd, paired
    differences, and the .md; stopped after two units, the rerun trains only the rest."""
    import distill.commands.compare as compare

    args = ["compare", "--methods", "kd,sleepkd:preset=code", "--out", str(tmp_path / "res"),
            "--runs", str(tmp_path / "runs"), "--data", str(shared_data), *FAST]  # fmt: skip
    real, calls = compare.score, []

    def stop_after_two(*a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(compare, "score", stop_after_two)
    assert main(args) == 130  # Ctrl-C
    first = _trained(capsys.readouterr().out)
    assert first == [("teacher", 0), ("student (from scratch)", 0)]
    monkeypatch.setattr(compare, "score", real)
    assert main(args) == 0
    second = _trained(capsys.readouterr().out)
    assert not set(first) & set(second) and len(second) == 2 * 5 - 2
    assert main(args) == 0  # all done: nothing is trained again
    assert _trained(capsys.readouterr().out) == []
    res = json.loads((tmp_path / "res" / "compare-tiny-cross-dataset-quick.json").read_text())
    paired = res["paired"]["student (from scratch)"]["causal"]
    kd_scr = res["rows"][1]["modes"]["causal"]["per_seed"]
    kd_row = res["rows"][2]["modes"]["causal"]["per_seed"]
    assert paired["kd"]["accuracy"]["per_seed"] == pytest.approx(
        [b["accuracy"] - a["accuracy"] for a, b in zip(kd_scr, kd_row, strict=True)]
    )
    assert "sleepkd:preset=code" in res["paired"]["kd"]["causal"]
    assert (
        "Paired per-seed differences vs **kd**"
        in (tmp_path / "res" / "compare-tiny-cross-dataset-quick.md").read_text()
    )
    res = json.loads((tmp_path / "res" / "compare-tiny-cross-dataset-quick.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    assert labels == ["teacher", "student (from scratch)", "kd", "sleepkd:preset=code", "TA"]
    kd = res["rows"][2]["modes"]["causal"]
    assert kd["n_seeds"] == 2 and len(kd["per_seed"]) == 2
    accs = [r["accuracy"] for r in kd["per_seed"]]
    assert kd["mean"]["accuracy"] == pytest.approx(sum(accs) / 2)
    assert res["ta_from"] == "sleepkd:preset=code"
    md = (tmp_path / "res" / "compare-tiny-cross-dataset-quick.md").read_text()
    assert "| kd |" in md and "±" in md and "cross-dataset" in md


def test_parse_shard_accepts_i_of_n_only():
    """``--shard I/N`` needs 0 <= I < N; every other spelling is a usage error."""
    import argparse

    from distill.commands.compare import parse_shard

    assert parse_shard("0/2") == (0, 2) and parse_shard("2/3") == (2, 3)
    for bad in ("2/2", "-1/2", "1", "a/b", "1/0", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="I/N"):
            parse_shard(bad)


@pytest.mark.slow
def test_compare_shards_split_the_seeds_and_share_one_table(shared_data, tmp_path, capsys):
    """Two shards train disjoint seeds into one run folder; each table counts both shards'
    finished units; the plain rerun trains nothing and reports every seed."""
    args = ["compare", "--methods", "kd", "--out", str(tmp_path / "res"),
            "--runs", str(tmp_path / "runs"), "--data", str(shared_data), *FAST]  # fmt: skip
    assert main([*args, "--shard", "1/2"]) == 0
    one = _trained(capsys.readouterr().out)
    assert {seed for _, seed in one} == {1} and len(one) == 3
    assert main([*args, "--shard", "0/2"]) == 0
    zero = _trained(capsys.readouterr().out)
    assert {seed for _, seed in zero} == {0} and len(zero) == 3
    res = json.loads((tmp_path / "res" / "compare-tiny-cross-dataset-quick.json").read_text())
    assert all(r["modes"]["causal"]["n_seeds"] == 2 for r in res["rows"])
    assert main(args) == 0
    assert _trained(capsys.readouterr().out) == []
    assert main([*args, "--shard", "2/2"]) == 2  # usage error, named in one line
    assert "--shard: '2/2'" in capsys.readouterr().err


@pytest.mark.slow
def test_ablate_lists_full_l1_to_l4_and_variants_and_reuses_compare_chains(
    shared_data, tmp_path, capsys
):
    """The ablation table has the full loss, L1–L4 and variant a rows. Its full row is the
    same loss as compare's ``sleepkd``: run after compare, it scores that chain again
    instead of training a second one (chains are stored by method key, not row label)."""
    common = ["--out", str(tmp_path / "res"), "--runs", str(tmp_path / "runs"),
              "--data", str(shared_data), *FAST[:-2], "--seeds", "1"]  # fmt: skip
    assert main(["compare", "--methods", "sleepkd", *common]) == 0
    chain = next((tmp_path / "runs").rglob("seed0/full/sleepkd"))
    files = {p: p.stat().st_mtime_ns for p in chain.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["ablate", *common]) == 0
    res = json.loads((tmp_path / "res" / "ablate-tiny-cross-dataset-paper-quick.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    assert labels[0] == "teacher" and labels[1] == "student (from scratch)"
    assert [lab[:2] for lab in labels[3:7]] == ["L1", "L2", "L3", "L4"]
    assert labels[-1].startswith("variant a")
    assert all(r["modes"]["causal"]["n_seeds"] == 1 for r in res["rows"])
    trained = [row for row, _ in _trained(capsys.readouterr().out)]
    assert "teacher" not in trained and "student (from scratch)" not in trained
    assert {p: p.stat().st_mtime_ns for p in chain.rglob("*") if p.is_file()} == files
    assert sorted(d.name for d in chain.parent.iterdir() if d.is_dir()) == [
        "scratch", "sleepkd", "sleepkd_alpha=0.0", "sleepkd_beta=0.0", "sleepkd_chain=False",
        "sleepkd_delta=0.0", "sleepkd_gamma=0.0", "teacher",
    ]  # fmt: skip
    cmp = json.loads((tmp_path / "res" / "compare-tiny-cross-dataset-quick.json").read_text())
    by = {r["label"]: r["modes"]["causal"]["per_seed"] for r in cmp["rows"]}
    assert res["rows"][2]["modes"]["causal"]["per_seed"] == by["sleepkd"]
    full = labels[2]
    assert full.startswith("SleepKD full") and res["references"] == [labels[1], full]
    vs_full = res["paired"][full]["causal"]
    assert set(vs_full) == set(labels) - {full}
    md = (tmp_path / "res" / "ablate-tiny-cross-dataset-paper-quick.md").read_text()
    assert f"Paired per-seed differences vs **{full}**" in md
