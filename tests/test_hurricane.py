"""HURRICANE's candidates per device: each position keeps the blocks fastest on a latency table, and
supernet training and the search then see only those."""
import numpy as np
import pytest

import train_supernet
from oneshot_nas.cost.latency import LatencyTable
from oneshot_nas.errors import UserError
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.search.run import gene_choices
from oneshot_nas.search.settings import SearchSettings
from oneshot_nas.space import get_space
from tests.test_train_cli import rec_flags


def made_up_table(space):
    """Block b at position p costs order[p][b] ms at the narrowest width, 2 ms more per scale."""
    order = np.array([[4, 1, 2, 3], [1, 2, 3, 4], [2, 2, 1, 9], [9, 8, 7, 1]], dtype=float)
    blocks = order[:, :, None] + 2.0 * np.arange(space.num_scales)
    return LatencyTable(space, "phone", 1, 0.5, 0.2, blocks)


def test_each_position_keeps_the_blocks_fastest_on_the_device():
    space = get_space("tiny4")
    table = made_up_table(space)
    assert table.fastest_blocks(2) == [(1, 2), (0, 1), (0, 2), (2, 3)]     # the tie at position 2: lower id
    assert table.fastest_blocks(1) == [(1,), (0,), (2,), (3,)]
    assert table.fastest_blocks(4) == [(0, 1, 2, 3)] * 4
    with pytest.raises(UserError, match="--device-blocks 5: keep 1 to 4 of the 4 block choices"):
        table.fastest_blocks(5)


def test_training_and_search_draw_only_the_devices_blocks(rng):
    space = get_space("tiny4")
    kept = made_up_table(space).fastest_blocks(2)
    sampler = PathSampler(space, block_ids=kept)
    sampler.start_epoch(tuple(range(space.num_scales)))
    drawn = np.array([sampler(rng).blocks for _ in range(400)])
    for p, allowed in enumerate(kept):
        assert set(drawn[:, p]) == set(allowed)                  # all of them, and nothing else
    assert [set(c) for c in gene_choices(space, "both", device_blocks=kept)[:4]] == [set(k) for k in kept]
    with pytest.raises(UserError, match="give its --latency-table PATH"):
        SearchSettings(supernet="x", device_blocks=2)
    with pytest.raises(UserError, match="leave out --constraint-sampler strolling"):
        PathSampler(space, kind="strolling", block_ids=kept)


def test_the_cli_trains_a_supernet_of_the_devices_blocks(small, tmp_path):
    space = get_space("tiny4")
    table = made_up_table(space).save(tmp_path / "phone.json")
    out = tmp_path / "run"
    flags = rec_flags(small) + ["--space", "tiny4", "--num-epochs", "1", "--batch-size", "32", "--val-paths", "1",
                                "--calib-images", "32", "-j", "1", "--no-progress", "--save-dir", str(out)]
    with pytest.raises(UserError, match="give its --latency-table PATH"):
        train_supernet.main(flags + ["--device-blocks", "2"])
    train_supernet.main(flags + ["--device-blocks", "2", "--latency-table", str(table)])
    counts = np.array(read_jsonl(out / "paths.jsonl")[0]["block_counts"])      # (position, block)
    kept = made_up_table(space).fastest_blocks(2)
    for p, allowed in enumerate(kept):
        assert all((counts[p, b] > 0) == (b in allowed) for b in range(space.num_blocks))
