#!/usr/bin/env bash
# Score the frozen shipped student on the 8 DREAMS excerpts (the test set: other people,
# C3-A1 / Cz-A1), causal, pooled over 480 epochs, through two paths:
# 1. distill evaluate --onnx (the daemon's loader and normaliser on the 100-Hz excerpts)
#    -> bench/results/default-student/cross-dataset.{json,md} and the card's metrics;
# 2. sleepstream replay of each excerpt written to a temporary EDF (deleted afterwards)
#    -> bench/results/default-student/replay-dreams.{json,md}.
# Only metrics are written. Run after scripts/build_default_student.sh; never feed these
# figures back into the recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CARD=${CARD:-sleepstream/models/default.card.json}
OUT=${OUT:-bench/results/default-student}
$PY -m distill evaluate --onnx "$CARD" --protocol cross-dataset --mode both \
  --out "$OUT" --stem cross-dataset --no-progress
$PY -m bench.generalisation.default_student card-metrics "$CARD" "$OUT/cross-dataset.json"
$PY -m bench.generalisation.default_student replay "$CARD" "$OUT"
