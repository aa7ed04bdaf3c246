#!/bin/sh
# Single-Path NAS on the demo (docs/singlepath.md): superkernel searches of `tiny4` on the embedded
# digits, lambda found for the target, then the winner retrained by the ground-truth table's recipe.
# TARGET is the target flag (default the quickstart's budget, --target-macs 0.3M; for a latency,
# TARGET="--target-latency-ms 2.2 --latency-table T.json" with T from
# python profiling/latency_table.py --space tiny4 --batch-size 32 --out T.json). OUT is the folder.
# About 2 minutes 15 s on 2 CPU cores (8 searches of 8 epochs, then 40 retraining epochs).
# Extra flags go to the search (e.g. --max-searches 4, --lambda 0.3).
. "$(dirname "$0")/env.sh"
OUT=${OUT:-logs/singlepath}
TARGET=${TARGET:---target-macs 0.3M}
set -x
python search_singlepath.py $TARGET \
    --space tiny4 \
    --num-epochs 8 \
    --search-warmup 3 \
    --batch-size 64 \
    --lr 0.1 \
    --start-lambda 1 \
    --lambda-factor 4 \
    --max-searches 8 \
    --tolerance 0.05 \
    --save-dir "$OUT/search" \
    --models-dir "$OUT/models" \
    --overwrite --no-progress "$@"
sh scripts/train_subnet.sh "$OUT/models/search.json" --save-dir "$OUT/subnet" \
    --output "$OUT/subnet/winner.params" --overwrite --no-progress
