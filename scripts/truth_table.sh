#!/bin/sh
# The ground-truth table of the demo (docs/ranking.md): 60 `tiny4` architectures stratified over the
# whole MACs range of the space, 3 seeds each, and the plain CNN they must beat, every one trained
# from scratch on the few-shot digits with the recipe of scripts/train_subnet.sh (the same flags
# below; a test keeps them equal). 183 trainings of 8-20 s: 30-60 minutes on 2 CPU cores. The
# result ships as benchmarks/truth-tiny4/ (the quickstart's report compares its winner with it).
# Run it again to continue; start it in several processes (one per device or machine, same
# --save-dir) to share the units. Extra flags are passed through and win.
. "$(dirname "$0")/env.sh"
exec python -m oneshot_nas.rank truth \
    --space tiny4 \
    --archs 60 \
    --seeds 3 \
    --reference plain-8-16-32-64 \
    --digits-view few-shot \
    --num-epochs 40 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --optimizer nag \
    --wd 4e-5 \
    --val-every 10 \
    --save-dir logs/truth-tiny4 \
    "$@"
