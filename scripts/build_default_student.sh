#!/usr/bin/env bash
# Rebuild the shipped default student (sleepstream/models/default.card.json +
# default.encoder.onnx + default.head.onnx) from SC4001 alone. It never reads DREAMS.
#
# Recipe s-seq20-prior3-mix (bench/generalisation/recipes.py), seed 0 (fixed a priori):
# the recipe with the highest SC4001-only proxy selection kappa (s-seq20-prior3; ledger in
# bench/results/generalisation/ledger.md) plus derivation mixing in the final training.
# A small DeepSleepNet-student encoder (32 filters, 256-d) trained per epoch, then a BiLSTM
# head over 20-epoch causal windows on its frozen states; all 841 scored epochs of SC4001,
# both derivations, sessions normalised causally with the daemon's running robust scale;
# fixed passes, no validation set, no early stopping. Exported in split mode (encoder +
# head ONNX, parity-checked against torch) with a card declaring the normalisation, the
# zero-epoch history pad and the training recording (sha256).
# CPU, one torch thread, deterministic given the seed (~5-10 min on 2 cores).
# Then score it (DREAMS, test set, once): bash scripts/score_default_student.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEED=${SEED:-0}
OUT=${OUT:-sleepstream/models/default.onnx}
$PY -m bench.generalisation.run final --recipe s-seq20-prior3-mix --seeds "$SEED" --export "$OUT"
