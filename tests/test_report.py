"""The pipeline's report, from the records of a real (tiny) run of every step."""
import json

import pytest

import search_supernet
import train_subnet
import train_supernet
from oneshot_nas import rank
from oneshot_nas.export import __main__ as export
from oneshot_nas.errors import UserError
from oneshot_nas.runs.report import build_report, verdict
from oneshot_nas.train.truthtable import read_references, read_table
from profiling import score
from tests.test_train_cli import rec_flags


def test_report_reads_every_step(small, tmp_path):
    out = tmp_path / "quickstart"
    data = rec_flags(small)
    train_supernet.main(data + ["--num-epochs", "2", "--batch-size", "32", "--inherit-epochs", "1",
                                "--val-paths", "2", "--calib-images", "64", "-j", "1", "--no-progress",
                                "--save-dir", str(out / "supernet")])
    search_supernet.main(data + ["--supernet", str(out / "supernet" / "supernet.params"),
                                 "--strategy", "genetic", "--population", "4", "--generations", "2", "--topk", "2",
                                 "--crossover", "1", "--mutation", "1", "--update-bn-images", "64",
                                 "--search-val-images", "32", "--save-dir", str(out / "search"),
                                 "--models-dir", str(out / "models"), "--topk-save", "1", "--no-plots"])
    train_subnet.main(data + [str(out / "models" / "search-1.json"), "--num-epochs", "1", "--batch-size", "32",
                              "-j", "1", "--no-progress", "--save-dir", str(out / "subnet"),
                              "--output", str(out / "subnet" / "winner.params")])
    score.main([str(out / "subnet" / "winner.params"), "--format", "json", "--out", str(out / "profile.json")])
    export.main(data + [str(out / "subnet" / "winner.params"), "--to", "symbol,pytorch",
                        "--out-dir", str(out / "export")])
    (out / "steps.jsonl").write_text('{"step": "supernet", "seconds": 3, "command": "python train_supernet.py"}\n')

    text = build_report(out).read_text()
    winner = json.loads((out / "subnet" / "winner.json").read_text())
    best = max((json.loads(line) for line in (out / "search" / "search.jsonl").read_text().splitlines()),
               key=lambda r: r["score"])
    assert winner["arch"] == best["arch"] and f"`{best['arch']}`" in text
    assert f"{100 * winner['record']['top1']:.1f}%" in text
    assert "after 2 epochs" in text and "one path (inheritance)" in text and "uniform paths" in text
    assert "reproduce the network | yes" in text
    profile = json.loads((out / "profile.json").read_text())
    assert f"{profile['totals']['macs']:,}" in text
    assert (out / "sampled_paths.png").stat().st_size > 10000
    assert "![sampled architectures](sampled_paths.png)" in text
    assert "no ground-truth table given" in text

    # a ground-truth table trained by the retraining's recipe: the winner next to its architectures
    quick = ["--num-epochs", "1", "--batch-size", "32", "-j", "1", "--no-progress", "--no-cache", "--seeds", "1"]
    rank.main(["truth", *data, *quick, "--archs", "3", "--reference", "plain-8-16", "--save-dir", str(tmp_path / "t")])
    text = build_report(out, truth=tmp_path / "t").read_text()
    others = [r.top1[0] for r in read_table(tmp_path / "t") if str(r.arch) != winner["arch"]]
    beaten = sum(t < winner["record"]["top1"] for t in others)
    assert f"| the winner beats | {beaten} of {len(others)} " in text
    (plain,) = read_references(tmp_path / "t")
    assert f"| reference net `plain-8-16` ({plain.macs / 1e6:.3g}M MACs" in text
    # another recipe is not compared
    rank.main(["truth", *data, *quick, "--archs", "2", "--lr", "0.05", "--save-dir", str(tmp_path / "t2")])
    assert "its training recipe differs from the table's" in build_report(out, truth=tmp_path / "t2").read_text()
    with pytest.raises(UserError, match="ground-truth table nowhere does not exist"):
        build_report(out, truth="nowhere")


def test_report_of_a_missing_run_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="run sh scripts/quickstart.sh first"):
        build_report(tmp_path / "nothing")


def test_the_verdict_weighs_the_winner_against_the_median_and_the_seed_noise():
    floor = {"seed_std_mean": 0.006}
    assert "no better than a random pick" in verdict(0.955, 0.954, floor)       # +0.1 points: noise
    assert "beat a random pick" in verdict(0.959, 0.954, floor, seeds=3)        # +0.5 > 0.6 / sqrt(3)
    assert "beat a random pick" in verdict(0.965, 0.954, floor)                 # +1.1 points
    assert "worse than a random pick" in verdict(0.940, 0.954, floor)           # -1.4 points
    assert "no seed noise known" in verdict(0.965, 0.954, None)
