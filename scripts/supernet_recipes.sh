#!/bin/sh
# Supernet recipes ranked against one ground-truth table (docs/ranking.md, "Which supernet ranks
# best"): each recipe trains a `tiny4` supernet on the few-shot digits (scripts/train_supernet.sh
# plus the flags below), scores the table's architectures with it (python -m oneshot_nas.rank score)
# and the rankings are compared in one table (logs/recipes/recipes.md). About 15 minutes on 2 CPU cores.
. "$(dirname "$0")/env.sh"
OUT=logs/recipes
TRUTH=${TRUTH:-benchmarks/truth-tiny4}
mkdir -p "$OUT"

recipe() {   # recipe NAME FLAGS...: train the supernet NAME with FLAGS, then rank the table with it
    name="$1"; shift
    sh scripts/train_supernet.sh --save-dir "$OUT/$name" --overwrite --no-progress "$@" || exit 1
    python -m oneshot_nas.rank score --supernet "$OUT/$name/supernet.params" --truth "$TRUTH" \
        --digits-view few-shot --save-dir "$OUT/$name/ranking" --overwrite --no-plots || exit 1
}

recipe seed0 --seed 0                       # the demo recipe: one path 10 epochs, then 5 uniform (the quickstart's)
recipe seed1 --seed 1
recipe seed2 --seed 2
recipe 150-epochs --num-epochs 150 --val-every 10         # the earlier demo recipe: 140 uniform epochs
recipe 300-epochs --num-epochs 300 --val-every 10
recipe strolling --max-macs 1M --constraint-sampler strolling   # paths spread evenly over the MACs range
recipe channel-warm-up-150 --num-epochs 150 --val-every 10 --epoch-start-cs 30 --cs-warm-up  # OneShot+'s
recipe from-scratch --inherit-epochs 0                    # no one-path warm start: uniform from the first step
recipe from-scratch-150 --num-epochs 150 --val-every 10 --inherit-epochs 0
recipe bn-only-from-11 --bn-only-from 11                 # BN-NAS: 1 full uniform epoch, then 4 training only BN
recipe bn-only-from-15-150 --num-epochs 150 --val-every 10 --bn-only-from 15   # 5 full, then 135 BN-only
recipe uniform-10 --num-epochs 20 --val-every 20          # twice the uniform steps: the compute of two paths a step
# Pi-NAS (oneshot_nas/train/pinas.py): two paths a step with a consistency loss, a mean teacher, both.
# The teacher's momentum sets its horizon, 1 / (1 - m) steps: 10 of the 30 uniform steps, 100 of 840.
recipe pinas-cross-path --cross-path 1
recipe pinas-teacher --mean-teacher 0.9
recipe pinas-both-seed0 --cross-path 1 --mean-teacher 0.9
recipe pinas-both-seed1 --cross-path 1 --mean-teacher 0.9 --seed 1
recipe pinas-both-seed2 --cross-path 1 --mean-teacher 0.9 --seed 2
recipe pinas-both-150 --num-epochs 150 --val-every 10 --cross-path 1 --mean-teacher 0.99
# PARSEC / FP-NAS (oneshot_nas/sample/learned.py): paths from a learned distribution. 30 uniform steps
# need a larger learning rate than the default (0.5, for runs of thousands of steps) to move it at all.
recipe parsec --learn-sampling --dist-min-samples 4 --dist-lr 5           # PARSEC: 4 paths every step
recipe fpnas --learn-sampling --dist-joint-from 13 --dist-lr 5            # FP-NAS: 4 paths, fewer as it sharpens; joint from 13
recipe fpnas-150 --num-epochs 150 --val-every 10 --learn-sampling --dist-joint-from 80
recipe uniform-k4-150 --num-epochs 150 --val-every 10 --learn-sampling --dist-lr 0 --dist-min-samples 4  # the control: 4 uniform paths a step
python -m oneshot_nas.rank compare --out "$OUT/recipes.md" \
    "$OUT"/seed0/ranking "$OUT"/seed1/ranking "$OUT"/seed2/ranking "$OUT"/150-epochs/ranking \
    "$OUT"/300-epochs/ranking "$OUT"/strolling/ranking "$OUT"/channel-warm-up-150/ranking \
    "$OUT"/from-scratch/ranking "$OUT"/from-scratch-150/ranking "$OUT"/bn-only-from-11/ranking \
    "$OUT"/bn-only-from-15-150/ranking "$OUT"/uniform-10/ranking "$OUT"/pinas-cross-path/ranking \
    "$OUT"/pinas-teacher/ranking "$OUT"/pinas-both-seed0/ranking "$OUT"/pinas-both-seed1/ranking \
    "$OUT"/pinas-both-seed2/ranking "$OUT"/pinas-both-150/ranking "$OUT"/parsec/ranking "$OUT"/fpnas/ranking \
    "$OUT"/fpnas-150/ranking "$OUT"/uniform-k4-150/ranking
