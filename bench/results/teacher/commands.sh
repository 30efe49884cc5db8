#!/usr/bin/env bash
# The exact commands behind bench/results/teacher.md (DeepSleepNet teacher on SC4001).
# CPU only, one thread per process, nice 10; run from the repository root.
# Every run is deterministic given --seed and resumable with --resume (same command).
set -euo pipefail
ARGS="--model deepsleepnet-teacher --stride 10 --assembled-ratio 0.5 --epochs 12 --seed 0 --resume"

# 1. within-night-blocks: 4 contiguous blocks of SC4001, one model per held-out block
#    (run in parallel, one process per fold).
for F in 0 1 2 3; do
  nice -n 10 .venv/bin/python -m distill train --split within-night-blocks --folds 4 --fold $F \
    --out runs/teacher-dsn/wnb $ARGS &
done
# 2. the whole night minus a validation block (for cross-dataset and export)
nice -n 10 .venv/bin/python -m distill train --split full --out runs/teacher-dsn/full $ARGS &
wait

# 3. metrics (JSON + Markdown next to this script)
nice -n 10 .venv/bin/python -m distill evaluate --checkpoint runs/teacher-dsn/wnb \
  --protocol within-night-blocks --mode both --out bench/results/teacher \
  --stem deepsleepnet-teacher-within-night-blocks
nice -n 10 .venv/bin/python -m distill evaluate --checkpoint runs/teacher-dsn/full/best.safetensors \
  --protocol cross-dataset --mode both --out bench/results/teacher \
  --stem deepsleepnet-teacher-cross-dataset

# 4. variant v2 (reported in teacher.md, not the headline): neighbour validation block,
#    up to 16 stage-2 epochs.
for F in 0 1 2 3; do
  nice -n 10 .venv/bin/python -m distill train --split within-night-blocks --folds 4 --fold $F \
    --val-block neighbour --out runs/teacher-dsn/wnb-v2 \
    --model deepsleepnet-teacher --stride 10 --assembled-ratio 0.5 --epochs 16 --seed 0 --resume &
done
wait
nice -n 10 .venv/bin/python -m distill evaluate --checkpoint runs/teacher-dsn/wnb-v2 \
  --protocol within-night-blocks --mode both --out bench/results/teacher \
  --stem deepsleepnet-teacher-within-night-blocks-v2
