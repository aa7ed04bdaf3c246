#!/bin/sh
# Train the weight-sharing supernet. With no data flags: the `tiny` space on the embedded digits,
# a few minutes on 2 CPU cores. Extra flags are passed through and win over the ones below, e.g.
#   sh scripts/train_supernet.sh --space oneshot+ --rec-train ... --gpus 0,1,2,3 --save-dir logs/supernet-oneshot+
# (see docs/training.md for the ImageNet and multi-machine commands). Paths are relative to the repo root.
. "$(dirname "$0")/env.sh"
exec python train_supernet.py \
    --space tiny \
    --num-epochs 30 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --inherit-epochs 4 \
    --epoch-start-cs 12 \
    --cs-warm-up \
    --val-paths 3 \
    --calib-images 500 \
    --save-dir logs/supernet-tiny \
    "$@"
