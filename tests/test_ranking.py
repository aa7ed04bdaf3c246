"""python -m oneshot_nas.rank score, for real: a tiny supernet trained 2 epochs on a slice of the
digits scored against a real ground-truth table; every score is the search's own, every statistic
is recomputable from the records; bad input stops before anything is written."""
import json
from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest
from scipy import stats

import train_supernet
from oneshot_nas import rank
from oneshot_nas.cost.model import CostModel
from oneshot_nas.data.slices import prepare_search_data
from oneshot_nas.data.sources import resolve_dataset
from oneshot_nas.runs.modelfile import load_model, save_model
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.search.ranking import SCORES, default_scores
from oneshot_nas.search.scoring import CandidateEvaluator
from oneshot_nas.search.zero_cost import BNScores
from oneshot_nas.space import get_space
from oneshot_nas.train.truthtable import read_table, write_table
from tests.test_space import random_arch
from tests.test_train_cli import fails, rec_flags

SPLIT = ["--update-bn-images", "64", "--search-val-images", "32", "--batch-size", "32"]


@pytest.fixture(scope="module")
def supernet(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet") / "run"
    train_supernet.main(rec_flags(small) + ["--num-epochs", "2", "--batch-size", "32", "--inherit-epochs", "1",
                                            "--val-paths", "1", "--calib-images", "32", "-j", "1", "--no-progress",
                                            "--save-dir", str(out)])
    return out / "supernet.params"


def test_scores_of_a_trained_supernet_against_a_real_table(supernet, truth_table, small, tmp_path, capsys):
    table = truth_table[0] / "table"
    out = tmp_path / "rank"
    summary = rank.main(["score", "--supernet", str(supernet), "--truth", str(table), *rec_flags(small), *SPLIT,
                         "--resamples", "1000", "--save-dir", str(out)])
    rows = read_table(table)
    records = read_jsonl(out / "scores.jsonl")
    assert [r["arch"] for r in records] == [str(r.arch) for r in rows]
    assert json.loads((out / "args.json").read_text())["truth"] == str(table)
    # each score is the one the search uses, on the search's split
    net, _ = load_model(supernet, kind="supernet")
    dataset = resolve_dataset(rec_train=str(small.train.rec), rec_train_idx=str(small.train.idx),
                              rec_val=str(small.val.rec), rec_val_idx=str(small.val.idx), num_classes=10)
    data = prepare_search_data(dataset, 32, update_bn_images=64, search_val_images=32)   # as the search reads it
    evaluator, bn, costs = CandidateEvaluator(net, data, [mx.cpu()], 32), BNScores(net), CostModel(net.space)
    for r, row in zip(records, rows):
        assert r["supernet_top1"] == evaluator.evaluate(row.arch)["accuracy"]
        assert r["bn_score"] == pytest.approx(bn.score(row.arch))
        assert r["macs"] == costs.measure(row.arch)["macs"] and r["params"] == costs.measure(row.arch)["params"]
        assert r["true_top1_mean"] == pytest.approx(np.mean(row.top1))
    # the statistics are those of the records, with intervals around them
    truth = [r["true_top1_mean"] for r in records]
    assert set(summary["scores"]) == set(default_scores()) and summary["ks"] == [1]     # 10% and 25% of 3
    assert "fox_predictor" in SCORES and "fox_predictor" not in summary["scores"]      # only when named
    for name, result in summary["scores"].items():
        tau = stats.kendalltau([r[name] for r in records], truth).statistic
        assert result["kendall_tau"]["value"] == pytest.approx(tau)
        assert result["kendall_tau"]["lo"] <= result["kendall_tau"]["value"] <= result["kendall_tau"]["hi"]
        rho = stats.spearmanr([r[name] for r in records], truth).statistic
        assert result["spearman_rho"]["value"] == pytest.approx(rho)
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "ranking.json").read_text()) == summary
    assert summary["noise_floor"] == json.loads((table / "noise_floor.json").read_text()) | {
        "tau_resampled": summary["noise_floor"]["tau_resampled"]}       # the same table, other resamples
    markdown = (out / "ranking.md").read_text()
    assert "| `supernet_top1` |" in markdown and "| noise floor (seed bootstrap) |" in markdown
    assert "Search split: 32 held-out training images, BN recalibrated on 64 training images." in markdown
    assert markdown.strip() in capsys.readouterr().out
    # the comparison of recipes: the supernet's training run, its taus and the search score's precision@k
    table = rank.main(["compare", str(out), "--out", str(tmp_path / "recipes.md")]).splitlines()
    assert table[2].split(" | ")[:6] == ["| supernet", "epochs", "training s", "peak MB",
                                         "random paths, last val top-1", "tau `supernet_top1`"]
    assert table[2].endswith("P@1 `supernet_top1` |")
    cells = table[4].strip("| ").split(" | ")
    training = read_jsonl(supernet.parent / "metrics.jsonl")
    assert cells[:2] == ["`run`", "2"] and float(cells[3]) == pytest.approx(
        max(e["peak_rss_mb"] for e in training), abs=0.5)
    top1 = summary["scores"]["supernet_top1"]
    tau, at_1 = top1["kendall_tau"], top1["precision_at_k"]["1"]
    assert cells[5].startswith(f"{tau['value']:.3f} [") and cells[-1].startswith(f"{at_1['value']:.3f}")


def rows_for(space, rng, n, template):
    return [replace(template, arch=random_arch(space, rng)) for _ in range(n)]


@pytest.fixture(scope="module")
def broken_supernet(supernet, tmp_path_factory):
    """The supernet with one BatchNorm scale NaN (a diverged training)."""
    net, _ = load_model(supernet, kind="supernet")
    gamma = next(p for name, p in net.collect_params().items() if name.endswith("gamma"))
    gamma.set_data(gamma.data() * np.nan)
    return save_model(net, tmp_path_factory.mktemp("broken") / "supernet.params")


@pytest.fixture
def bad_tables(truth_table, tmp_path, rng):
    table = truth_table[0] / "table"
    rows = read_table(table)
    lines = (table / "truth.jsonl").read_text().splitlines()
    nan = tmp_path / "nan.jsonl"
    first = lines[0].replace('"top1": [', '"top1": [NaN, ', 1).replace('"seeds": [', '"seeds": [9, ', 1)
    nan.write_text("\n".join([first.replace('"top5": [', '"top5": [1.0, ', 1)] + lines[1:]) + "\n")
    return {"oneshot": write_table(tmp_path / "oneshot.jsonl", rows_for(get_space("oneshot"), rng, 4, rows[0])),
            "two": write_table(tmp_path / "two.jsonl", rows[:2]), "nan": nan, "none": tmp_path / "none.jsonl"}


@pytest.mark.parametrize("flags, message", [
    (["--truth", "{none}"], "does not exist; make one with python -m oneshot_nas.rank truth"),
    (["--truth", "{oneshot}"], "holds architectures of space 'oneshot', but the supernet"),
    (["--truth", "{two}"], "has results for 2 architectures; a ranking needs at least 3"),
    (["--truth", "{nan}"], "line 1: top1 of seed 9 is nan, not an accuracy in [0, 1]"),
    (["--truth", "{table}", "--top-k", "5"], "top-k 5 means 5 of the 3 architectures ranked; precision@k needs k "
                                              "below 3"),
    (["--truth", "{table}", "--scores", "supernet_top1,flops"], "unknown score flops; choose from supernet_top1"),
    (["--truth", "{table}", "--resamples", "10"], "10 bootstrap resamples are too few"),
    (["--truth", "{table}", "--supernet", "{nowhere}"], "nowhere.params does not exist"),
    (["--truth", "{table}", "--supernet", "{broken}"], "holds NaN or infinite weights"),
])
def test_bad_input_stops_before_anything_is_written(flags, message, supernet, broken_supernet, truth_table,
                                                    bad_tables, tmp_path, capsys):
    names = {**bad_tables, "table": truth_table[0] / "table", "nowhere": tmp_path / "nowhere.params",
             "broken": broken_supernet}
    flags = [f.format(**names) for f in flags]
    fails(rank.main, ["score", "--supernet", str(supernet), *flags, "--save-dir", str(tmp_path / "r")], capsys,
          message)
    assert not (tmp_path / "r").exists()
