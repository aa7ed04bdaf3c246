"""python -m oneshot_nas.rank truth, for real on a slice of the digits: the table and its records, a
second run trains nothing, the cache and the table feed other folders, two processes share one
table without doing a unit twice, a dead process's unit continues from its checkpoint, and bad
input stops before anything is written."""
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from oneshot_nas import rank
from oneshot_nas.runs.rundir import RunDir, read_jsonl
from oneshot_nas.runs.workers import Workers
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.train.groundtruth import GroundTruthRun, TruthSettings
from oneshot_nas.train.retrain import retrain
from oneshot_nas.train.settings import Settings
from oneshot_nas.train.truthtable import read_references, read_table
from tests.conftest import ROOT
from tests.test_train_cli import fails, rec_flags

QUICK = ["--num-epochs", "1", "--batch-size", "32", "-j", "1", "--no-progress", "--max-macs", "0.45M"]
INCLUDED = Architecture(get_space("tiny"), [1, 0, 3, 2] * 5, [6, 5, 7, 4] * 5)


def truth(small, folder, *flags, cache):
    argv = ["truth", *rec_flags(small), *QUICK, "--archs", "2", "--seeds", "2", "--include", str(INCLUDED),
            "--save-dir", str(folder), *(["--cache", str(cache)] if cache else ["--no-cache"]), *flags]
    return rank.main(argv)


def test_the_table_and_its_records(truth_table, capsys):
    root, summary = truth_table
    folder = root / "table"
    assert summary["trained"] == 6 and summary["complete"] and summary["units"] == 6
    rows = read_table(folder / "truth.jsonl")
    assert [r.included for r in rows] == [False, False, True] and rows[-1].arch == INCLUDED
    assert rows[0].macs <= rows[1].macs <= 0.45e6 and rows[0].bin == 0 and rows[1].bin == 1
    args = json.loads((folder / "args.json").read_text())
    assert args["archs"] == 2 and args["seeds"] == 2 and args["command"] == "truth"
    for row in rows:
        assert row.seeds == (0, 1) and all(0 <= t <= 1 for t in row.top1 + row.top5)
        assert row.recipe["num_epochs"] == 1 and row.recipe["batch_size"] == 32
        assert row.recipe_key == summary["recipe_key"]
        for seed, top1 in zip(row.seeds, row.top1):
            unit = folder / "units" / str(row.arch) / f"seed-{seed}"
            epochs = read_jsonl(unit / "metrics.jsonl")
            assert [e["epoch"] for e in epochs] == [0] and epochs[0]["val_top1"] == top1
            assert not (unit / "checkpoint").exists()              # the result is kept, the weights not
    noise = json.loads((folder / "noise_floor.json").read_text())
    assert noise == summary["noise_floor"] and noise["architectures"] == 3 and noise["seeds"] == 2
    assert noise["seed_std_mean"] == pytest.approx(np.mean([r.top1_std for r in rows]))
    assert not list((folder / "claims").iterdir())                 # every claim released


def test_a_second_run_trains_nothing_and_other_folders_reuse_results(truth_table, small, capsys):
    root, first = truth_table
    before = {p: p.stat().st_mtime_ns for p in (root / "table" / "units").rglob("*")}
    again = truth(small, root / "table", cache=root / "cache")
    assert again["trained"] == 0 and again["done_before"] == 6 and again["complete"]
    assert {p: p.stat().st_mtime_ns for p in (root / "table" / "units").rglob("*")} == before
    assert json.loads((root / "table" / "args.resume-1.json").read_text())["archs"] == 2
    # another folder, same recipe: every result comes from the shared cache
    cached = truth(small, root / "from-cache", cache=root / "cache")
    assert cached["trained"] == 0 and cached["from_cache"] == 6
    assert read_table(root / "from-cache") == read_table(root / "table")
    # a table copied into a new folder, without its units and without the cache
    (root / "copy").mkdir()
    shutil.copy(root / "table" / "truth.jsonl", root / "copy" / "truth.jsonl")
    copied = truth(small, root / "copy", cache=None)
    assert copied["trained"] == 0 and copied["from_table"] == 6
    # another recipe in the same folder is another table: refused, nothing written
    files = sorted(p.name for p in (root / "table").iterdir())
    capsys.readouterr()
    with pytest.raises(SystemExit):
        rank_cli(small, root / "table", root / "cache", "--lr", "0.2")
    err = capsys.readouterr().err
    assert "cannot resume the table" in err and "recipe.lr was 0.1, now 0.2" in err
    assert sorted(p.name for p in (root / "table").iterdir()) == files


def rank_cli(small, folder, cache, *flags):
    from oneshot_nas.cli import run
    return run(rank.main, ["truth", *rec_flags(small), *QUICK, "--archs", "2", "--seeds", "2", "--include",
                           str(INCLUDED), "--save-dir", str(folder), "--cache", str(cache), *flags])


def test_two_processes_share_one_table_without_doing_a_unit_twice(small, tmp_path):
    argv = [sys.executable, "-m", "oneshot_nas.rank", "truth", *rec_flags(small), *QUICK, "--archs", "3",
            "--seeds", "2", "--no-cache", "--save-dir", str(tmp_path / "shared")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    logs = [r.communicate(timeout=300)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], logs
    trained = [int(re.search(r"this process: (\d+) trained", log).group(1)) for log in logs]
    assert sum(trained) == 6 and min(trained) >= 1, trained       # each unit once, both processes worked
    rows = read_table(tmp_path / "shared")
    assert len(rows) == 3 and all(r.seeds == (0, 1) for r in rows)
    results = [json.loads(p.read_text()) for p in (tmp_path / "shared" / "units").rglob("result.json")]
    assert len(results) == 6 and len({r["process"] for r in results}) == 2
    assert (tmp_path / "shared" / "args.json").is_file() and (tmp_path / "shared" / "args.resume-1.json").is_file()


def test_a_dead_processs_unit_is_taken_over_and_continues_from_its_checkpoint(small, tmp_path):
    settings = TruthSettings(archs=2, seeds=1, limits={"macs": (None, 0.45e6)}, rec_train=str(small.train.rec),
                             rec_train_idx=str(small.train.idx), rec_val=str(small.val.rec),
                             rec_val_idx=str(small.val.idx), cache="", save_dir=str(tmp_path / "t"),
                             progress=False)
    training = Settings(num_epochs=2, batch_size=32, threads=1)
    table = GroundTruthRun(settings, training).prepare().open()
    arch, seed = table.units()[0]
    folder = table.unit_dir(arch, seed)
    # a process claimed the unit, trained its first epoch and died
    retrain(arch, table.dataset, replace(training, seed=seed), table.contexts, Workers(), run=RunDir(folder),
            save_dir=folder, stop_after=0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    table.claims.path(f"{arch}-seed-{seed}").write_text(json.dumps({"host": table.claims.host, "pid": dead.pid}))
    summary = table.execute()
    assert summary["trained"] == 2 and summary["complete"]
    epochs = read_jsonl(folder / "metrics.jsonl")
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert "continuing from the checkpoint" in (tmp_path / "t" / "truth.log").read_text()


def test_reference_nets_train_by_the_same_recipe_and_seeds_beside_the_table(small, tmp_path, capsys):
    summary = truth(small, tmp_path / "t", "--reference", "plain-8-16-32-64", "--seeds", "1", cache=None)
    assert summary["complete"] and summary["units"] == 4 and summary["trained"] == 4
    (ref,) = read_references(tmp_path / "t")
    # conv3x3 MACs per layer (16x16, 8x8, 4x4, 4x4 outputs), the classifier, the 4x4 average pool
    macs = 3 * 8 * 9 * 256 + 8 * 16 * 9 * 64 + 16 * 32 * 9 * 16 + 32 * 64 * 9 * 16 + 64 * 10 + 64 * 16
    assert ref.name == "plain-8-16-32-64" and ref.seeds == (0,) and ref.macs == pytest.approx(macs, rel=0.01)
    assert ref.recipe_key == summary["recipe_key"] == read_table(tmp_path / "t")[0].recipe_key
    unit = read_jsonl(tmp_path / "t" / "units" / "plain-8-16-32-64" / "seed-0" / "metrics.jsonl")
    assert unit[-1]["val_top1"] == ref.top1[0]
    assert "plain-8-16-32-64" in capsys.readouterr().out        # printed with the table


@pytest.mark.parametrize("flags, message", [
    (["--archs", "1"], "1 architectures: a ranking needs at least 2 (--archs)"),
    (["--seeds", "0"], "0 seeds: train every architecture at least once (--seeds)"),
    (["--bins", "9"], "9 bins for 4 architectures"),
    (["--max-macs", "0.1M"], "has macs in [any, 0.1M]: they range from 0.171M to 1.14M"),
    (["--include", "nowhere.json"], "architecture file nowhere.json does not exist"),
    (["--include", "oneshot+_B0001-0010-32012212-0020_C8768-5734-24234566-3346"],
     "is of space 'oneshot+', but the table is of space 'tiny'"),
    (["--claim-timeout", "10"], "claim timeout 10.0 s"),
    (["--rec-train", "nowhere.rec"], "3 of them are not given"),
    (["--reference", "plain-8-x"], "reference net 'plain-8-x': give the widths of its layers"),
    (["--reference", "resnet999"], "unknown reference net 'resnet999'"),
])
def test_bad_input_stops_before_anything_is_written(flags, message, tmp_path, capsys):
    fails(rank.main, ["truth", "--archs", "4", *QUICK, "--save-dir", str(tmp_path / "t"), *flags], capsys, message)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("flags, message", [(["--max-macs", "nan"], "'nan' is not a finite number"),
                                            (["--stop-after-epoch", "1"], "unrecognized arguments"),
                                            (["--kv-store", "dist_sync"], "invalid choice: 'dist_sync'")])
def test_flags_that_do_not_fit_are_refused_by_the_parser(flags, message, tmp_path, capsys):
    fails(rank.main, ["truth", "--save-dir", str(tmp_path / "t"), *flags], capsys, message)
    assert not (tmp_path / "t").exists()


def recipe_flags(script):
    """The training flags a script passes (the lines '    --flag value \\')."""
    flags = re.findall(r"^\s+(--[a-z-]+)(?: (\S+))? \\$", (ROOT / "scripts" / script).read_text(), re.M)
    return {flag: value for flag, value in flags if flag not in TABLE_FLAGS}


TABLE_FLAGS = ("--space", "--archs", "--seeds", "--reference", "--save-dir")


def test_the_table_script_retrains_with_the_recipe_of_train_subnet():
    assert recipe_flags("truth_table.sh") == recipe_flags("train_subnet.sh")
    assert recipe_flags("train_subnet.sh")["--num-epochs"] == "40"
