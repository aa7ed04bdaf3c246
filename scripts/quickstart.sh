#!/bin/sh
# The whole pipeline in one command, on the embedded digits and a CPU (about a minute on 2 cores,
# plus the first-time set-up of .venv). The demo recipe (docs/ranking.md): the `tiny4` space on the
# few-shot view of the digits (359 training images, 719 that rank search candidates, 719 that
# report), small enough that a ground-truth table of 60 architectures x 3 seeds ships with the repo
# (benchmarks/truth-tiny4, sh scripts/truth_table.sh), so the report can say whether the search beat
# a random pick:
#   1. train a `tiny4` supernet            (scripts/train_supernet.sh)
#   2. search it under a MACs budget       (search_supernet.py)
#   3. retrain the winner from scratch     (scripts/train_subnet.sh: the table's recipe)
#   4. rank the table's architectures with the supernet (python -m oneshot_nas.rank score)
#   5. profile the winner                  (profiling/score.py)
#   6. export it to an MXNet symbol, ONNX, PyTorch and int8, each checked (python -m oneshot_nas.export)
#   7. write logs/quickstart/REPORT.md     (python -m oneshot_nas.report)
# Every run starts afresh in logs/quickstart (--overwrite). Extra flags go to the supernet training.
. "$(dirname "$0")/env.sh"
OUT=logs/quickstart
mkdir -p "$OUT"
: > "$OUT/steps.jsonl"

step() {   # step NAME RUN COMMAND...: run it, stop the pipeline if it fails, record how long it took
    name="$1"; run="$2"; shift 2   # RUN: what the step writes, relative to $OUT (the report reads it)
    echo "=== $name: $*" >&2
    start=$(date +%s)
    "$@" || { echo "quickstart: step '$name' failed" >&2; exit 1; }
    python -c 'import json, sys; print(json.dumps({"step": sys.argv[1], "run": sys.argv[2], "seconds": int(sys.argv[3]), "command": " ".join(sys.argv[4:])}))' \
        "$name" "$run" "$(( $(date +%s) - start ))" "$@" >> "$OUT/steps.jsonl"
}

# the supernet recipe is scripts/train_supernet.sh's (see the flags there)
step supernet supernet sh scripts/train_supernet.sh \
    --save-dir "$OUT/supernet" \
    --overwrite \
    "$@"

step search search python search_supernet.py \
    --supernet "$OUT/supernet/supernet.params" \
    --digits-view few-shot \
    --max-macs 0.3M \
    --strategy genetic \
    --population 16 \
    --generations 6 \
    --topk 6 \
    --crossover 6 \
    --mutation 6 \
    --save-dir "$OUT/search" \
    --models-dir "$OUT/models" \
    --topk-save 3 \
    --overwrite

step retrain subnet sh scripts/train_subnet.sh "$OUT/models/search-1.json" \
    --save-dir "$OUT/subnet" \
    --output "$OUT/subnet/winner.params" \
    --overwrite

step ranking ranking python -m oneshot_nas.rank score \
    --supernet "$OUT/supernet/supernet.params" \
    --truth benchmarks/truth-tiny4 \
    --digits-view few-shot \
    --save-dir "$OUT/ranking" \
    --overwrite

step profile profile.json python profiling/score.py "$OUT/subnet/winner.params" --out "$OUT/profile.md"
python profiling/score.py "$OUT/subnet/winner.params" --format json --out "$OUT/profile.json"

step export export python -m oneshot_nas.export "$OUT/subnet/winner.params" \
    --to symbol,onnx,pytorch,int8 \
    --digits-view few-shot \
    --out-dir "$OUT/export"

python -m oneshot_nas.report "$OUT" --truth benchmarks/truth-tiny4
echo "done: $OUT/REPORT.md" >&2
