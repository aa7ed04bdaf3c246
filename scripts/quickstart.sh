#!/bin/sh
# The whole pipeline in one command, on the embedded digits and a CPU (about 6 minutes on 2 cores,
# plus the first-time set-up of .venv):
#   1. train a `tiny` supernet           (scripts/train_supernet.sh)
#   2. search it under a MACs budget     (search_supernet.py)
#   3. retrain the winner from scratch   (train_subnet.py)
#   4. profile it                        (profiling/score.py)
#   5. export it to an MXNet symbol, ONNX, PyTorch and int8, each checked (python -m oneshot_nas.export)
#   6. write logs/quickstart/REPORT.md   (python -m oneshot_nas.report)
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

# the supernet recipe is scripts/train_supernet.sh's (30 epochs; see the flags there)
step supernet supernet sh scripts/train_supernet.sh \
    --save-dir "$OUT/supernet" \
    --overwrite \
    "$@"

step search search python search_supernet.py \
    --supernet "$OUT/supernet/supernet.params" \
    --max-macs 0.45M \
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

step retrain subnet python train_subnet.py "$OUT/models/search-1.json" \
    --num-epochs 15 \
    --batch-size 64 \
    --lr 0.1 \
    --lr-mode cosine \
    --save-dir "$OUT/subnet" \
    --output "$OUT/subnet/winner.params" \
    --overwrite

step profile profile.json python profiling/score.py "$OUT/subnet/winner.params" --out "$OUT/profile.md"
python profiling/score.py "$OUT/subnet/winner.params" --format json --out "$OUT/profile.json"

step export export python -m oneshot_nas.export "$OUT/subnet/winner.params" \
    --to symbol,onnx,pytorch,int8 \
    --out-dir "$OUT/export"

python -m oneshot_nas.report "$OUT"
echo "done: $OUT/REPORT.md" >&2
