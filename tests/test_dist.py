"""Supernet training under MXNet's parameter server: 2 workers + 1 server on 127.0.0.1.

Each worker reads its half of the training RecordIO, both draw the same path every step, the
server sums the path's gradients; so both workers must end with identical parameters, the chief
alone writes the record, and validation counts every image once across the two shards.
"""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np

from oneshot_nas.runs.rundir import read_jsonl
from tests.conftest import ROOT
from tests.test_train_cli import rec_flags


def test_two_workers_end_with_identical_parameters(small, tmp_path):
    save, dump = tmp_path / "run", tmp_path / "workers"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "oneshot_nas.launch", "-n", "2", "-s", "1", "--launcher", "local",
           sys.executable, str(ROOT / "train_supernet.py"), "--kv-store", "dist_sync", "--num-epochs", "1",
           "--batch-size", "16", "--val-paths", "1", "--calib-images", "32", "-j", "1", "--no-progress",
           "--save-dir", str(save), "--dump-worker-params", str(dump)] + rec_flags(small)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    params = [mx.nd.load(str(dump / f"worker-{rank}.params")) for rank in (0, 1)]
    assert params[0].keys() == params[1].keys() and len(params[0]) > 1000
    for name in params[0]:
        np.testing.assert_array_equal(params[0][name].asnumpy(), params[1][name].asnumpy(), err_msg=name)
    rows = read_jsonl(save / "metrics.jsonl")
    assert len(rows) == 1                                   # written once, by the chief
    assert rows[0]["updates"] == 8                          # 128 images a worker, 16 a step
    assert rows[0]["val_images"] == len(small.val)          # the two shards add up to the whole set
    assert (save / "supernet.params").is_file()
