#!/bin/sh
# Retrain one architecture from scratch (or --inherit-from SUPERNET.params):
#   sh scripts/train_subnet.sh models/NAME.json [flags]
# Defaults below suit a `tiny` architecture on the embedded digits (about 90% top-1 in 8 epochs);
# extra flags are passed through and win. Saves <save-dir>/NAME.params with NAME.json beside it.
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
    --num-epochs 8 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --optimizer nag \
    --wd 4e-5 \
    "$@"
