#!/bin/sh
# The main job on the embedded digits data (grows with the pipeline: train, search, retrain, export).
. "$(dirname "$0")/env.sh"
python - <<'PY'
from oneshot_nas.counting import Counts, count_ops
from oneshot_nas.space import load_architecture
for name in ("oneshot", "oneshot+", "oneshot-s+"):
    arch = load_architecture(f"models/{name}.json")
    c = Counts.of(count_ops(arch))
    print(f"{name:11s} {arch}  {c.macs / 1e6:6.1f}M MACs  {c.paper_params / 1e6:5.2f}M params")
PY
