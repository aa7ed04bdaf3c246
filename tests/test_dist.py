"""Supernet training under MXNet's parameter server: 2 workers + 1 server on 127.0.0.1.

Each worker reads its half of the training RecordIO, both draw the same path every step, the
server sums the path's gradients; so both workers must end with identical parameters, the chief
alone writes the record, and validation counts every image once across the two shards.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.runs.rundir import read_jsonl
from tests.conftest import ROOT
from tests.test_train_cli import rec_flags


@pytest.mark.parametrize("method", [[], ["--cross-path", "0.5", "--mean-teacher", "0.9"],
                                    ["--learn-sampling", "--dist-samples", "3"]], ids=["spos", "pinas", "learned"])
def test_two_workers_end_with_identical_parameters(method, small, tmp_path):
    save, dump = tmp_path / "run", tmp_path / "workers"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "oneshot_nas.launch", "-n", "2", "-s", "1", "--launcher", "local",
           sys.executable, str(ROOT / "train_supernet.py"), "--kv-store", "dist_sync", "--num-epochs", "1",
           "--batch-size", "16", "--val-paths", "1", "--calib-images", "32", "-j", "1", "--no-progress",
           "--save-dir", str(save), "--dump-worker-params", str(dump)] + method + rec_flags(small)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    nets = ["", "-teacher"] if "--mean-teacher" in method else [""]    # Pi-NAS's teacher must agree too
    for net in nets:
        params = [mx.nd.load(str(dump / f"worker-{rank}{net}.params")) for rank in (0, 1)]
        assert params[0].keys() == params[1].keys() and len(params[0]) > 1000
        for name in params[0]:
            np.testing.assert_array_equal(params[0][name].asnumpy(), params[1][name].asnumpy(), err_msg=name)
    rows = read_jsonl(save / "metrics.jsonl")
    assert len(rows) == 1                                   # written once, by the chief
    assert rows[0]["updates"] == 8                          # 128 images a worker, 16 a step
    assert rows[0]["val_images"] == len(small.val)          # the two shards add up to the whole set
    assert (save / "supernet.params").is_file()
    if "--learn-sampling" in method:      # the learned distribution travels with the supernet, for the search
        saved = json.loads((save / "supernet.json").read_text())["record"]["distribution"]
        assert saved == json.loads((save / "checkpoint" / "state.json").read_text())["task"]["learned"]


def _job_processes(marker):
    """pids of the processes whose command line holds `marker`, with their DMLC role and rank."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            environ = dict(item.split("=", 1) for item in
                           open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")
                           if "=" in item)
        except OSError:
            continue
        if marker in cmdline and "oneshot_nas.launch" not in cmdline:
            found.append((int(pid), environ.get("DMLC_ROLE"), environ.get("DMLC_TASK_ID")))
    return found


def test_a_dead_worker_ends_the_whole_job_and_the_run_resumes(small, tmp_path):
    """Kill worker 1 of a 2-worker job after its first checkpoint: the launcher stops every other
    process within seconds, says who died, and --resume continues from the checkpoint."""
    import signal
    import time
    save = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "oneshot_nas.launch", "-n", "2", "-s", "1", "--launcher", "local",
           sys.executable, str(ROOT / "train_supernet.py"), "--kv-store", "dist_sync", "--num-epochs", "6",
           "--batch-size", "16", "--val-paths", "1", "--calib-images", "32", "-j", "1", "--no-progress",
           "--save-dir", str(save)] + rec_flags(small)
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (save / "checkpoint" / "state.json").is_file():
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before its first checkpoint"
        time.sleep(0.05)
    workers = [pid for pid, role, rank in _job_processes(str(save)) if role == "worker" and rank == "1"]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    killed = time.monotonic()
    _, err = job.communicate(timeout=60)
    assert time.monotonic() - killed < 30 and job.returncode != 0
    assert f"worker 1 (pid {workers[0]}) was killed by SIGKILL; stopped the 3 other process(es)" in err
    assert "--resume" in err
    time.sleep(0.5)
    assert _job_processes(str(save)) == []                  # nothing of the job is left running
    done_epochs = [r["epoch"] for r in read_jsonl(save / "metrics.jsonl")]
    assert done_epochs and done_epochs == list(range(len(done_epochs))) and len(done_epochs) < 6
    resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["epoch"] for r in read_jsonl(save / "metrics.jsonl")] == list(range(6))
    assert (save / "supernet.params").is_file()


def test_singlepath_searches_under_two_workers_stay_identical(small, tmp_path):
    """Single-Path NAS under the parameter server: two searches (two networks on one kvstore), every
    worker ends each with the chief's parameters, and the chief alone writes the record."""
    save, dump = tmp_path / "run", tmp_path / "workers"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "oneshot_nas.launch", "-n", "2", "-s", "1", "--launcher", "local",
           sys.executable, str(ROOT / "search_singlepath.py"), "--kv-store", "dist_sync", "--target-macs", "0.3M",
           "--max-searches", "2", "--num-epochs", "2", "--search-warmup", "1", "--batch-size", "16", "-j", "1",
           "--no-progress", "--models-dir", str(tmp_path / "models"),
           "--save-dir", str(save), "--dump-worker-params", str(dump)] + rec_flags(small)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for k in range(2):
        params = [mx.nd.load(str(dump / f"lambda-{k}" / f"worker-{rank}.params")) for rank in (0, 1)]
        assert params[0].keys() == params[1].keys() and any("thresholds" in name for name in params[0])
        for name in params[0]:
            np.testing.assert_array_equal(params[0][name].asnumpy(), params[1][name].asnumpy(), err_msg=name)
    rows = read_jsonl(save / "search.jsonl")
    assert [r["index"] for r in rows] == [0, 1]
    assert len(read_jsonl(save / "lambda-1" / "metrics.jsonl")) == 2
