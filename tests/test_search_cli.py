"""search_supernet.py driven in-process on the tiny space: outputs, resume, constraints, bad input."""
import json

import mxnet as mx
import numpy as np
import pytest

import search_supernet
from oneshot_nas.cli import run
from oneshot_nas.cost.counting import Counts, count_ops
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import load_model, save_model
from oneshot_nas.sample.learned import LearnedDistribution
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.cost.counting import space_key
from oneshot_nas.space import Architecture, get_space, load_architecture
from oneshot_nas.nn.supernet import SuperNet

SMALL = ["--population", "4", "--generations", "2", "--update-bn-images", "64", "--search-val-images", "32",
         "--batch-size", "32"]
GA = ["--strategy", "genetic", "--topk", "2", "--crossover", "1", "--mutation", "2"]


@pytest.fixture(scope="module")
def supernet_path(tmp_path_factory):
    mx.random.seed(1)
    net = SuperNet("tiny")
    net.initialize(mx.init.MSRAPrelu())
    r = np.random.default_rng(1)            # BN scales off their init, so BN scores differ
    for name, p in net.collect_params().items():
        if name.endswith("gamma"):
            p.set_data(mx.nd.array(r.uniform(0.2, 1.8, p.shape)))
    return save_model(net, tmp_path_factory.mktemp("supernet") / "tiny_supernet.params")


def search(tmp_path, supernet_path, *flags, run_name="run", strategy=GA):
    argv = ["--supernet", str(supernet_path), "--save-dir", str(tmp_path / "logs" / run_name),
            "--models-dir", str(tmp_path / "models"), *SMALL, *strategy, *flags]
    return search_supernet.main(argv)


def latency_table(path, space, rng):
    blocks = rng.uniform(0.01, 0.1, (space.num_positions, space.num_blocks, space.num_scales))
    path.write_text(json.dumps({
        "format": "oneshot-nas-latency-v1", "space": space.name, "space_key": space_key(space),
        "space_config": space.to_dict(), "device": "cpu", "batch_size": 1, "dtype": "float32",
        "unit": "ms", "stem_ms": 0.1, "head_ms": 0.1, "blocks_ms": blocks.tolist()}))
    return blocks


def test_a_search_writes_records_models_plots_and_a_table(tmp_path, supernet_path, capsys, rng):
    limit = 0.5e6
    space = get_space("tiny")
    blocks = latency_table(tmp_path / "latency.json", space, rng)
    summary = search(tmp_path, supernet_path, "--max-flops", "0.5M", "--topk-save", "3",
                     "--latency-table", str(tmp_path / "latency.json"), "--max-latency-ms", "1.4")
    logs = tmp_path / "logs" / "run"
    args = json.loads((logs / "args.json").read_text())
    assert args["max_flops"] == limit and args["population"] == 4
    rows = read_jsonl(logs / "search.jsonl")
    assert len(rows) == 8 == summary["candidates"] and len({r["arch"] for r in rows}) == 8
    assert [r["generation"] for r in rows] == [0] * 4 + [1] * 4
    for r in rows:
        assert {"generation", "arch", "macs", "params", "score", "latency_ms", "accuracy", "seconds",
                "recal_seconds", "eval_seconds", "bn_score", "micronet_score"} <= set(r)
        counts = Counts.of(count_ops(Architecture.from_str(r["arch"])))
        assert r["macs"] == counts.macs <= limit and r["params"] == counts.paper_params
        assert r["images"] == 32 and r["score"] == r["accuracy"] == r["correct"] / 32
        arch = Architecture.from_str(r["arch"])
        ms = 0.2 + sum(blocks[p, b, c] for p, (b, c) in enumerate(zip(arch.blocks, arch.channels)))
        assert r["latency_ms"] == pytest.approx(ms) and ms <= 1.4
    saved = sorted((tmp_path / "models").glob("run-*.json"))
    assert [p.name for p in saved] == ["run-1.json", "run-2.json", "run-3.json"]
    arch, record = load_architecture(saved[0], with_record=True)
    best = max(rows, key=lambda r: r["score"])
    assert record["score"] == best["score"] and record["search_split"] == "held-out training"
    assert max(r["score"] for r in rows) == summary["top"][0]["score"]
    for name in ("search_front.png", "search_progress.png", "summary.json", "search.log"):
        assert (logs / name).stat().st_size > 0
    assert (logs / "search_front.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert str(arch) in out and "Kendall tau" in out and summary["kendall_tau_bn_vs_accuracy"]


def test_resume_continues_without_rescoring(tmp_path, supernet_path):
    reference = search(tmp_path, supernet_path, "--generations", "3", "--no-plots", run_name="ref")
    search(tmp_path, supernet_path, "--no-plots", run_name="cut")
    path = tmp_path / "logs" / "cut" / "search.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:6]) + "\n")        # stopped in the middle of generation 1
    resumed = search(tmp_path, supernet_path, "--generations", "3", "--no-plots", "--resume",
                     run_name="cut")
    rows = read_jsonl(path)
    assert [r["arch"] for r in rows[:6]] == [json.loads(x)["arch"] for x in lines[:6]]
    assert len(rows) == 12 and len({r["arch"] for r in rows}) == 12      # nothing scored twice
    ref_rows = read_jsonl(tmp_path / "logs" / "ref" / "search.jsonl")
    assert [(r["arch"], r["score"]) for r in rows] == [(r["arch"], r["score"]) for r in ref_rows]
    assert resumed["top"] == reference["top"]
    assert (tmp_path / "logs" / "cut" / "args.resume-1.json").is_file()
    with pytest.raises(UserError, match=r"cannot resume the search .* seed was 0, now 3"):
        search(tmp_path, supernet_path, "--resume", "--seed", "3", run_name="cut")
    assert not (tmp_path / "logs" / "cut" / "args.resume-2.json").exists()
    with pytest.raises(UserError, match="already holds a run; resume it"):
        search(tmp_path, supernet_path, run_name="cut")


def test_zero_cost_first_pass_then_rescoring(tmp_path, supernet_path):
    summary = search(tmp_path, supernet_path, "--score", "bn", "--rescore", "3", "--population", "6",
                     "--no-plots", "--topk-save", "2")
    rows = read_jsonl(tmp_path / "logs" / "run" / "search.jsonl")
    first = [r for r in rows if r["stage"] == "search"]
    again = [r for r in rows if r["stage"] == "rescore"]
    assert len(first) == 12 and all(r["accuracy"] is None and r["score"] == r["bn_score"] for r in first)
    by_bn = sorted(first, key=lambda r: -r["bn_score"])[:3]
    assert {r["arch"] for r in again} == {r["arch"] for r in by_bn}
    assert all(r["accuracy"] is not None for r in again)
    tau = summary["kendall_tau_bn_vs_accuracy"]
    assert tau is None or tau["candidates"] == 3
    record = load_architecture(tmp_path / "models" / "run-1.json", with_record=True)[1]
    assert record["accuracy"] == max(r["accuracy"] for r in again)


def test_regularized_evolution_with_a_budget_then_the_best_rescored_on_a_second_split(tmp_path, supernet_path):
    flags = ["--sample-size", "2", "--max-candidates", "7", "--rescore-top", "3", "--rescore-images", "24",
             "--no-plots", "--topk-save", "2"]
    summary = search(tmp_path, supernet_path, *flags, strategy=[])       # regularized: the default
    path = tmp_path / "logs" / "run" / "search.jsonl"
    rows = read_jsonl(path)
    first = [r for r in rows if r["stage"] == "search"]
    again = {r["arch"]: r for r in rows if r["stage"] == "second-split"}
    assert summary["strategy"] == "regularized" and summary["candidates"] == len(first) == 7
    assert summary["stopped_early"] == "the budget of 7 scored candidates is spent"
    assert [r["origin"] for r in first] == ["random"] * 4 + ["mutation"] * 3
    best3 = sorted(first, key=lambda r: -r["score"])[:3]
    assert list(again) == [r["arch"] for r in best3]
    assert all(r["images"] == 32 for r in first) and all(r["images"] == 24 for r in again.values())
    means = {r["arch"]: (r["score"] + again[r["arch"]]["score"]) / 2 for r in best3}
    top = summary["top"]
    assert [t["arch"] for t in top[:3]] == sorted(means, key=lambda a: -means[a])      # winner by the mean
    for t in top[:3]:
        assert t["score"] == pytest.approx(means[t["arch"]])
        assert (t["first_score"], t["second_score"]) == (next(r["score"] for r in best3 if r["arch"] == t["arch"]),
                                                         again[t["arch"]]["score"])
    assert all("second_score" not in t for t in top[3:])
    record = load_architecture(tmp_path / "models" / "run-1.json", with_record=True)[1]
    assert record["second_accuracy"] == again[top[0]["arch"]]["accuracy"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")          # stopped while re-scoring the third
    resumed = search(tmp_path, supernet_path, *flags, "--resume", strategy=[])
    assert [json.loads(x)["arch"] for x in path.read_text().splitlines()] == [json.loads(x)["arch"] for x in lines]
    assert resumed["top"] == summary["top"]


def test_frozen_halves(tmp_path, supernet_path):
    search(tmp_path, supernet_path, "--search", "blocks", "--no-plots", "--topk-save", "1", "--objective",
           "balanced", "--cost-weight", "0.2", run_name="blocks", strategy=["--strategy", "random"])
    rows = read_jsonl(tmp_path / "logs" / "blocks" / "search.jsonl")
    assert all(r["accuracy"] - 0.2 - 1e-9 <= r["score"] <= r["accuracy"] for r in rows)
    assert any(r["score"] < r["accuracy"] for r in rows)
    one = Architecture.from_str(rows[0]["arch"]).space.channel_scales.index(1.0)
    assert all(Architecture.from_str(r["arch"]).channels == (one,) * 20 for r in rows)
    fixed = tmp_path / "models" / "blocks-1.json"
    search(tmp_path, supernet_path, "--fix-blocks-from", str(fixed), "--no-plots", run_name="channels")
    rows = read_jsonl(tmp_path / "logs" / "channels" / "search.jsonl")
    blocks = load_architecture(fixed).blocks
    assert all(Architecture.from_str(r["arch"]).blocks == blocks for r in rows)
    assert len({Architecture.from_str(r["arch"]).channels for r in rows}) == 8
    with pytest.raises(UserError, match="a search of the channels freezes the blocks"):
        search(tmp_path, supernet_path, "--search", "channels", run_name="x")


def test_bad_input_gets_one_clear_message(tmp_path, supernet_path, capsys):
    # a checkpoint that does not match its space: the message names the parameter
    wrong = tmp_path / "wrong.params"
    wrong.write_bytes(supernet_path.read_bytes())
    meta = json.loads(supernet_path.with_suffix(".json").read_text())
    meta["space_config"]["last_conv"] = 128
    wrong.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"parameter head\.\S+ has shape"):
        search(tmp_path, wrong, run_name="a")
    with pytest.raises(UserError, match=r"no architecture of space 'tiny' .* has macs in "
                                        r"\[any, 0\.001M\]: they range from 0\.\d+M"):
        search(tmp_path, supernet_path, "--max-flops", "1K", run_name="b")
    with pytest.raises(UserError, match=r"gave up after 200 random candidates: none met macs <= 0\.3M; "
                                        r"params >= 0\.25M\. The nearest seen had macs \S+M, params \S+M"):
        search(tmp_path, supernet_path, "--max-flops", "0.3M", "--min-params", "0.25M", "--max-tries", "200",
               run_name="joint")
    with pytest.raises(UserError, match="search split is empty"):
        search(tmp_path, supernet_path, "--search-val-images", "0", run_name="c")
    with pytest.raises(UserError, match="batch size -4: give 1 or more"):
        search(tmp_path, supernet_path, "--batch-size", "-4", run_name="e")
    with pytest.raises(UserError, match=r"mutation probability in \[0, 1\]"):
        search(tmp_path, supernet_path, "--strategy", "genetic", "--mutation-prob", "1.5", run_name="f")
    assert not (tmp_path / "logs").exists()       # nothing written: fix the flag and run again
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:    # what a user sees: one line, no traceback
        run(search_supernet.main, ["--supernet", str(tmp_path / "none.params"), "--save-dir",
                                   str(tmp_path / "logs" / "d")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: model file") and "none.params does not exist" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        run(search_supernet.main, ["--supernet", str(supernet_path), "--cost-weight", "nan"])
    assert "argument --cost-weight: 'nan' is not a finite number" in capsys.readouterr().err


def test_the_oneshot_plus_spellings_of_search_flags_mean_ours():
    theirs = search_supernet.parse_args(["--supernet", "s.params", "--search-mode", "random", "--population-size",
                                         "8", "--flop-max", "0.3M", "--param-max", "60K"])
    ours = search_supernet.parse_args(["--supernet", "s.params", "--strategy", "random", "--population", "8",
                                       "--max-macs", "0.3M", "--max-params", "60K"])
    assert search_supernet.settings_from(theirs) == search_supernet.settings_from(ours)
    assert search_supernet.settings_from(ours).limits == {"macs": (None, 0.3e6), "params": (None, 6e4)}


def test_the_learned_strategy_draws_from_the_distribution_the_supernet_learned(tmp_path, supernet_path):
    with pytest.raises(UserError, match="has none: train it with --learn-sampling, or choose another strategy"):
        search(tmp_path, supernet_path, run_name="none", strategy=["--strategy", "learned"])
    assert not (tmp_path / "logs" / "none").exists()
    net, _ = load_model(supernet_path, kind="supernet")
    dist = LearnedDistribution(net.space)
    dist.logits[0][:, 2] = 20.0                 # it learned that block 2 is best everywhere
    learned = save_model(net, tmp_path / "learned.params", {"distribution": dist.state_dict()})
    search(tmp_path, learned, run_name="learned", strategy=["--strategy", "learned"])
    archs = [load_architecture(r["arch"]) for r in read_jsonl(tmp_path / "logs" / "learned" / "search.jsonl")]
    assert len(archs) == 8 and all(set(a.blocks) == {2} for a in archs)
    assert len({tuple(a.channels) for a in archs}) == 8      # the channels are still drawn, all distinct


def test_the_fox_strategy_explains_its_predictor(tmp_path, supernet_path):
    search(tmp_path, supernet_path, "--anneal-steps", "30", run_name="fox", strategy=["--strategy", "fox"])
    out = tmp_path / "logs" / "fox"
    records = read_jsonl(out / "search.jsonl")
    assert len(records) == 8 and {r["origin"] for r in records if r["generation"] == 1} <= {"predicted", "random"}
    table = (out / "predictor.md").read_text()
    assert "| feature | weight |" in table and "MACs (M)" in table and "p0 block = SNB-3" in table
    assert (out / "predictor.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="anneal_steps belongs to the fox strategy"):
        search(tmp_path, supernet_path, "--anneal-steps", "30", run_name="wrong")
