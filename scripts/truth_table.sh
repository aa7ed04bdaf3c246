#!/bin/sh
# The ground-truth table of the ranking study (docs/ranking.md): 60 `tiny` architectures stratified
# over the MACs range of the quickstart's budget (<= 0.45M), 3 seeds each, every one retrained from
# scratch on the embedded digits with the recipe of scripts/train_subnet.sh (the same flags below; a
# test keeps them equal). 180 trainings of about 32 s: about 1.6 hours on 2 CPU cores. Run it again
# to continue; start it in several processes (one per device or machine, same --save-dir) to share
# the units. Extra flags are passed through and win, e.g. --include logs/quickstart/models/search-1.json
. "$(dirname "$0")/env.sh"
exec python -m oneshot_nas.rank truth \
    --space tiny \
    --max-macs 0.45M \
    --archs 60 \
    --seeds 3 \
    --num-epochs 8 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --optimizer nag \
    --wd 4e-5 \
    --save-dir logs/truth-tiny \
    "$@"
