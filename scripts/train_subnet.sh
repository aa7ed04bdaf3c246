#!/bin/sh
# Retrain one architecture from scratch (or --inherit-from SUPERNET.params):
#   sh scripts/train_subnet.sh models/NAME.json [flags]
# The defaults below are the demo recipe (docs/ranking.md): a `tiny4` architecture trained on the
# few-shot view of the embedded digits (359 training images, 719 report images), 40 short epochs,
# 10-25 s on 2 CPU cores. scripts/truth_table.sh trains its table with the same flags (a test keeps
# them equal), so a retrained winner compares with the table's random architectures. Extra flags are
# passed through and win. Saves <save-dir>/NAME.params with NAME.json beside it.
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: sh scripts/train_subnet.sh ARCH.json [flags]   (e.g. models/oneshot-s+.json)" >&2
    exit 2
fi
arch="$1"
shift
# env.sh moves to the repo root: keep an architecture path given relative to the caller's folder
if [ -f "$arch" ]; then
    arch="$(cd "$(dirname "$arch")" && pwd)/$(basename "$arch")"
fi
. "$(dirname "$0")/env.sh"
exec python train_subnet.py "$arch" \
    --digits-view few-shot \
    --num-epochs 40 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --optimizer nag \
    --wd 4e-5 \
    --val-every 10 \
    "$@"
