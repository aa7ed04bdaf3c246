"""A search under MXNet's parameter-server launcher: 2 workers + 1 server on 127.0.0.1.

Each worker scores its share of every generation; the kvstore gathers the scores, so both workers
run the same search and the records equal those of a single-process search.
"""
import os
import re
import signal
import subprocess
import sys

import mxnet as mx
import pytest

import search_supernet
from oneshot_nas.data.sources import embedded_digits
from oneshot_nas.runs.modelfile import save_model
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.nn.supernet import SuperNet
from tests.conftest import ROOT

FLAGS = ["--strategy", "genetic", "--population", "4", "--generations", "2", "--topk", "2", "--crossover", "1",
         "--mutation", "2", "--update-bn-images", "64", "--search-val-images", "32", "--batch-size", "32",
         "--no-plots", "--topk-save", "1"]


def test_two_workers_share_and_gather_every_generation(tmp_path):
    mx.random.seed(2)
    net = SuperNet("tiny")
    net.initialize(mx.init.MSRAPrelu())
    supernet = save_model(net, tmp_path / "supernet.params")
    embedded_digits()            # packed once here, so the workers only read it
    cmd = [sys.executable, "-m", "oneshot_nas.launch", "-n", "2", "-s", "1", "--launcher", "local",
           sys.executable, str(ROOT / "search_supernet.py"), "--kv-store", "dist_sync",
           "--supernet", str(supernet), "--save-dir", str(tmp_path / "logs" / "dist"),
           "--models-dir", str(tmp_path / "models"), *FLAGS]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the distributed search did not finish:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    best = dict(re.findall(r"\[worker (\d)/2\] best: (\S+)", out))
    assert set(best) == {"0", "1"} and best["0"] == best["1"], out[-3000:]

    rows = read_jsonl(tmp_path / "logs" / "dist" / "search.jsonl")
    assert len(rows) == 8 and {r["worker"] for r in rows} == {0, 1}
    for generation in (0, 1):      # round-robin shares: 2 candidates each per generation
        workers = [r["worker"] for r in rows if r["generation"] == generation]
        assert workers == [0, 1, 0, 1]
    assert (tmp_path / "models" / "dist-1.json").is_file()

    # one process alone makes the same draws and the same scores
    single = search_supernet.main(["--supernet", str(supernet), "--save-dir", str(tmp_path / "logs" / "one"),
                                   "--models-dir", str(tmp_path / "models"), *FLAGS])
    alone = read_jsonl(tmp_path / "logs" / "one" / "search.jsonl")
    assert [(r["arch"], r["correct"]) for r in alone] == [(r["arch"], r["correct"]) for r in rows]
    assert single["top"][0]["arch"] == best["0"]
