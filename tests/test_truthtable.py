"""The ground-truth table format: it round-trips, a malformed line is refused with its line number,
and the recipe key changes exactly when the training would."""
import json
from dataclasses import replace

import pytest

from oneshot_nas.data.sources import Augmentation, Dataset, Records
from oneshot_nas.errors import UserError
from oneshot_nas.space import get_space
from oneshot_nas.train.settings import Settings
from oneshot_nas.train.truthtable import TruthRow, read_table, recipe_key, recipe_of, write_table
from tests.test_space import random_arch

RECIPE = {"num_epochs": 3, "lr": 0.1, "dataset": {"name": "digits"}}


def rows_of(space, rng, n=3):
    return [TruthRow(random_arch(space, rng), 4.1e5 + i, 1.6e5 - i, (0, 1), (0.9 - i / 10, 0.85), (1.0, 0.99),
                     recipe_key(RECIPE), RECIPE, bin=i, included=i == n - 1) for i in range(n)]


@pytest.mark.parametrize("space", [get_space("tiny"), get_space("tiny").with_classes(5)], ids=["tiny", "tiny-c5"])
def test_the_table_round_trips(space, tmp_path, rng):
    rows = rows_of(space, rng)
    write_table(tmp_path / "truth.jsonl", rows)
    assert read_table(tmp_path / "truth.jsonl") == rows
    assert read_table(tmp_path) == rows                       # the run folder names its table
    line = json.loads((tmp_path / "truth.jsonl").read_text().splitlines()[0])
    assert line["top1_mean"] == pytest.approx(0.875) and line["top1_std"] == pytest.approx(0.03535534)
    assert line["recipe"] == RECIPE and ("space_config" in line) == (space.name != "tiny")


def test_one_seed_has_no_std(tmp_path, rng):
    row = replace(rows_of(get_space("tiny"), rng, 1)[0], seeds=(4,), top1=(0.5,), top5=(0.9,))
    write_table(tmp_path / "t.jsonl", [row])
    line = json.loads((tmp_path / "t.jsonl").read_text())
    assert line["top1_mean"] == 0.5 and line["top1_std"] is None and read_table(tmp_path / "t.jsonl") == [row]


def break_line(tmp_path, rng, change, line=2):
    rows = [r.to_dict() for r in rows_of(get_space("tiny"), rng)]
    change(rows[line - 1])
    path = tmp_path / "truth.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda r: r["top1"].__setitem__(1, float("nan")), "line 2: top1 of seed 1 is nan, not an accuracy in [0, 1]"),
    (lambda r: r["top5"].__setitem__(0, 1.5), "line 2: top5 of seed 0 is 1.5"),
    (lambda r: r.pop("recipe_key"), "line 2 lacks recipe_key"),
    (lambda r: r.update(seeds=[0]), "seeds, top1 and top5 must be lists of the same length"),
    (lambda r: r.update(seeds=[1, 1]), "must be distinct integers"),
    (lambda r: r.update(arch="tiny_B0"), "line 2: 'tiny_B0' is not an architecture string"),
    (lambda r: r.update(recipe_key="other"), "mixes 2 training recipes"),
])
def test_a_malformed_table_is_refused_with_its_line(change, message, tmp_path, rng):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_table(break_line(tmp_path, rng, change))


def test_missing_or_foreign_files(tmp_path, rng):
    with pytest.raises(UserError, match="ground-truth table .*nothing.jsonl does not exist; make one with"):
        read_table(tmp_path / "nothing.jsonl")
    (tmp_path / "x.jsonl").write_text('{"epoch": 0, "loss": 1.0}\n')
    with pytest.raises(UserError, match="line 1 lacks arch, macs, params, seeds, top1, top5, recipe_key"):
        read_table(tmp_path / "x.jsonl")
    (tmp_path / "y.jsonl").write_text("not json\n")
    with pytest.raises(UserError, match="line 1 is not JSON"):
        read_table(tmp_path / "y.jsonl")
    rows = rows_of(get_space("tiny"), rng, 2)
    write_table(tmp_path / "z.jsonl", [rows[0], rows[0]])
    with pytest.raises(UserError, match="lists an architecture twice"):
        read_table(tmp_path / "z.jsonl")


def test_the_recipe_key_follows_what_shapes_the_result(tmp_path):
    for split in ("train", "val"):
        (tmp_path / f"{split}.idx").write_text("0\t0\n1\t100\n")
    data = Dataset("digits", Records(tmp_path / "train.rec", tmp_path / "train.idx"),
                   Records(tmp_path / "val.rec", tmp_path / "val.idx"), 10, Augmentation())
    base = recipe_key(recipe_of(Settings(num_epochs=3), "msra", 1, data))
    assert recipe_key(recipe_of(Settings(num_epochs=3, seed=5, threads=8), "msra", 1, data)) == base
    # how often and on how many images the epochs validate, log or keep models changes no weight
    same = Settings(num_epochs=3, val_images=50, val_every=10, log_interval=0, save_frequency=2)
    assert recipe_key(recipe_of(same, "msra", 1, data)) == base
    for changed in (recipe_of(Settings(num_epochs=4), "msra", 1, data),     # free on resume, not here
                    recipe_of(Settings(num_epochs=3, lr=0.2), "msra", 1, data),
                    recipe_of(Settings(num_epochs=3), "xavier", 1, data),
                    recipe_of(Settings(num_epochs=3), "msra", 2, data)):
        assert recipe_key(changed) != base
    (tmp_path / "val.idx").write_text("0\t0\n")                             # other data, same name
    assert recipe_key(recipe_of(Settings(num_epochs=3), "msra", 1, data)) != base
