#!/bin/sh
# HURRICANE's two-stage search on the demo (docs/search.md, "Two stages"): the later positions are
# trained and searched first with the earlier ones held, then the earlier ones with the later held at
# the first stage's winner. On `tiny4` (4 positions) with the demo recipe's data and budget:
#   stage 1: the demo supernet recipe (one path 10 epochs, then uniform paths), but only positions
#            2-3 sampled after the warm start, 0-1 held at the warm-start path; 2 uniform epochs;
#            searched under the quickstart's 0.3M MACs with positions 0-1 held the same way;
#   stage 2: from stage 1's weights, 2 uniform epochs sampling positions 0-1 with 2-3 held at
#            stage 1's winner; searched the same way; its winner is the result (models/hurricane-2-1.json).
# 4 uniform epochs in all against the one-stage demo's 5. About a minute on 2 CPU cores.
# Extra flags go to both supernet trainings and both searches (e.g. the device's candidates,
# --device-blocks 2 --latency-table T); BUDGET replaces the budget (e.g. BUDGET="--max-latency-ms 0.65
# --latency-table T") and OUT the folder. Paths are relative to the repo root.
. "$(dirname "$0")/env.sh"
OUT=${OUT:-logs/hurricane}
BUDGET=${BUDGET:---max-macs 0.3M}
HELD=tiny4_B0-0-0-0_C9-9-9-9          # the demo's warm-start path (every position block 0, widest)
SEARCH="--digits-view few-shot $BUDGET --strategy genetic --population 16 --generations 6 --topk 6 \
        --crossover 6 --mutation 6 --topk-save 1 --overwrite --no-progress"
set -x
sh scripts/train_supernet.sh --save-dir "$OUT/stage1" --overwrite --no-progress --num-epochs 12 \
    --free-positions 2:4 --fixed-from "$HELD" "$@"
python search_supernet.py --supernet "$OUT/stage1/supernet.params" --free-positions 2:4 --fixed-from "$HELD" \
    --save-dir "$OUT/search1" --models-dir "$OUT/models" $SEARCH "$@"
sh scripts/train_supernet.sh --save-dir "$OUT/stage2" --overwrite --no-progress --num-epochs 2 --inherit-epochs 0 \
    --init-from "$OUT/stage1/supernet.params" --free-positions 0:2 --fixed-from "$OUT/models/search1-1.json" "$@"
python search_supernet.py --supernet "$OUT/stage2/supernet.params" --free-positions 0:2 \
    --fixed-from "$OUT/models/search1-1.json" --save-dir "$OUT/search2" --models-dir "$OUT/models" $SEARCH "$@"
