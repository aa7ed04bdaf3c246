#!/bin/sh
# Mixed-precision search on the demo (docs/quantization.md): the `tiny4-q` supernet (blocks, widths
# and a weight and an activation bit width per position) trained on the few-shot digits, searched
# under a BitOps budget, the winner retrained quantization-aware and exported as a fake-quantized
# symbol. BUDGET replaces the budget (default --max-bitops 8M), OUT the folder. About 1.5 minutes on
# 2 CPU cores. Extra flags go to the supernet training.
. "$(dirname "$0")/env.sh"
OUT=${OUT:-logs/quantized}
BUDGET=${BUDGET:---max-bitops 8M}
set -x
python train_supernet.py --space tiny4-q --digits-view few-shot --num-epochs 15 --inherit-epochs 10 \
    --epoch-start-cs 0 --val-paths 3 --val-every 15 --calib-images 359 \
    --save-dir "$OUT/supernet" --overwrite --no-progress "$@"
python search_supernet.py --supernet "$OUT/supernet/supernet.params" --digits-view few-shot $BUDGET \
    --strategy genetic --population 16 --generations 6 --topk 6 --crossover 6 --mutation 6 \
    --save-dir "$OUT/search" --models-dir "$OUT/models" --topk-save 1 --overwrite --no-progress
sh scripts/train_subnet.sh "$OUT/models/search-1.json" --save-dir "$OUT/subnet" \
    --output "$OUT/subnet/winner.params" --overwrite --no-progress
python -m oneshot_nas.export "$OUT/subnet/winner.params" --to symbol --digits-view few-shot --out-dir "$OUT/export"
