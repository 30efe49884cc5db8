#!/usr/bin/env bash
# Rebuild the shipped default student (sleepstream/models/default.onnx + default.card.json).
#
# 1. the DeepSleepNet teacher on all of SC4001 (both EEG derivations, augmentation,
#    hypnogram-assembled nights), minus a validation block for early stopping;
# 2. SleepKD (paper preset) teacher -> TA -> student, same data and seed;
# 3. export of the student's causal streaming form to ONNX;
# 4. cross-dataset evaluation of that ONNX through sleepstream.inference (DREAMS, causal
#    and offline), written to bench/results/default-student/ and into the card.
# CPU only, one thread per process, deterministic given --seed. Run from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SEED=${SEED:-0}
COMMON="--seed $SEED --stride 10 --assembled-ratio 0.5 --epochs 12"
OUT=${OUT:-runs/default-student}
DESCRIPTION="SleepKD (paper preset, distill.methods.sleepkd defaults) teacher -> TA -> \
student, DeepSleepNet family. Data: the one Sleep-EDF night with EEG here (SC4001), both \
derivations (EEG Fpz-Cz, EEG Pz-Oz; one picked at random per training window), trimmed to \
841 epochs; epochs 0-652 train, 673-840 validation (early stopping on macro-F1), 20-epoch \
guard between. Half of the stage-2 training windows are 'hypnogram-assembled': their stage \
order follows one of the 38 other real Sleep-EDF-20 hypnograms and each position is filled \
with a real SC4001 training epoch of that stage, so the sequence model sees real transition \
statistics from ~41k epochs; the EEG itself comes from one night. Augmentation: amplitude \
scale, time shift, additive noise. Class weights (inverse frequency ^0.5). Metrics in this \
card: DREAMS excerpts 1-8 (other subjects, C3-A1/Cz-A1), never used for training or model \
selection. Rebuild: bash scripts/build_default_student.sh (seed 0, CPU, 1 thread)."

[ -f runs/teacher-dsn/full/best.safetensors ] || \
  $PY -m distill train --model deepsleepnet-teacher --split full --out runs/teacher-dsn/full $COMMON --resume
$PY -m distill distill --method sleepkd --family deepsleepnet \
  --teacher runs/teacher-dsn/full/best.safetensors --out "$OUT" $COMMON --no-progress
$PY -m distill export --checkpoint "$OUT/student/best.safetensors" \
  --out sleepstream/models/default.onnx
$PY -m distill evaluate --onnx sleepstream/models/default.onnx --protocol cross-dataset \
  --mode both --out bench/results/default-student --stem cross-dataset
$PY -m distill export --checkpoint "$OUT/student/best.safetensors" \
  --out sleepstream/models/default.onnx --metrics bench/results/default-student/cross-dataset.json \
  --description "$DESCRIPTION"
