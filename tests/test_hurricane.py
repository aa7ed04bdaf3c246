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
from oneshot_nas.space import Architecture, get_space
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


def test_a_stage_holds_the_other_positions_and_draws_the_rest_as_before(rng):
    from oneshot_nas.sample.samplers import UniformSampler
    from oneshot_nas.sample.stages import fixed_positions
    space = get_space("tiny4")
    held = fixed_positions(space, "2:4", "tiny4_B3-1-0-0_C2-7-0-0")
    assert held == {0: (3, 2), 1: (1, 7)}
    free, staged = UniformSampler(space), UniformSampler(space, fixed=held)
    for seed in range(20):
        a, b = free(np.random.default_rng(seed)), staged(np.random.default_rng(seed))
        assert tuple(b.blocks[:2]) == (3, 1) and tuple(b.channels[:2]) == (2, 7)
        assert a.blocks[2:] == b.blocks[2:] and a.channels[2:] == b.channels[2:]
    assert staged.choices[0] == (3,) and staged.choices[space.num_positions + 1] == (7,)
    for free_range, message in (("2-4", "give A:B"), ("0:4", "not every position"), ("3:9", "0 <= A < B <= 4")):
        with pytest.raises(UserError, match=message):
            fixed_positions(space, free_range, "tiny4_B3-1-0-0_C2-7-0-0")
    with pytest.raises(UserError, match="give their architecture with --fixed-from ARCH"):
        fixed_positions(space, "2:4", None)
    with pytest.raises(UserError, match="does not match space 'tiny4'"):
        fixed_positions(space, "2:4", str(Architecture.largest(get_space("tiny"))))


@pytest.mark.parametrize("free_range", ["1:3", "0:2", "2:4"])
def test_a_stage_holds_every_gene_group_of_a_quantized_space(free_range):
    """tiny4-q: the held positions keep their block, channel AND weight and activation bit widths,
    in the sampler's draws and in the choices the search and mutation see; the free positions
    draw as an unheld sampler does."""
    from oneshot_nas.sample.samplers import UniformSampler
    from oneshot_nas.sample.stages import fixed_positions, hold
    space = get_space("tiny4-q")
    source = Architecture.from_str("tiny4-q_B3-1-0-2_C2-7-0-5_W0-3-1-2_A3-2-0-1")
    lo, hi = (int(v) for v in free_range.split(":"))
    kept = [p for p in range(space.num_positions) if not lo <= p < hi]
    held = fixed_positions(space, free_range, str(source))
    groups = [g.name for g in space.gene_groups]
    assert groups == ["blocks", "channels", "wbits", "abits"]
    assert held == {p: tuple(getattr(source, g)[p] for g in groups) for p in kept}
    allowed = space.allowed_ids(hold(space, space.gene_choices(), held))
    for g in space.gene_groups:
        for p in range(space.num_positions):
            expected = (getattr(source, g.name)[p],) if p in kept else tuple(range(g.size))
            assert allowed[g.name][p] == expected, (g.name, p)
    free, staged = UniformSampler(space), UniformSampler(space, fixed=held)
    assert space.allowed_ids(staged.choices) == allowed         # what mutate() may pick
    for seed in range(20):
        a, b = free(np.random.default_rng(seed)), staged(np.random.default_rng(seed))
        for g in groups:
            ours, theirs = getattr(b, g), getattr(a, g)
            assert all(ours[p] == getattr(source, g)[p] for p in kept), g
            assert all(ours[p] == theirs[p] for p in range(lo, hi)), g


def test_two_stages_train_the_later_positions_then_the_earlier_from_the_first_weights(small, tmp_path):
    import mxnet as mx

    from oneshot_nas.runs.modelfile import load_model
    held = "tiny4_B0-0-0-0_C9-9-9-9"
    common = rec_flags(small) + ["--space", "tiny4", "--num-epochs", "1", "--batch-size", "32", "--val-paths", "1",
                                 "--calib-images", "32", "-j", "1", "--no-progress"]
    train_supernet.main(common + ["--save-dir", str(tmp_path / "one"), "--free-positions", "2:4", "--fixed-from", held])
    first = np.array(read_jsonl(tmp_path / "one" / "paths.jsonl")[0]["block_counts"])
    assert (first[:2, 1:] == 0).all() and (first[2:] > 0).sum() > 2         # positions 0-1 held at block 0
    winner = "tiny4_B2-1-3-3_C5-5-5-5"           # what stage 1's search would have found
    train_supernet.main(common + ["--save-dir", str(tmp_path / "two"), "--init-from", str(tmp_path / "one" / "supernet.params"),
                                  "--free-positions", "0:2", "--fixed-from", winner])
    second = np.array(read_jsonl(tmp_path / "two" / "paths.jsonl")[0]["block_counts"])
    assert second[2, 3] == second[3, 3] == second[2].sum() and (second[:2] > 0).sum() > 2
    one, _ = load_model(tmp_path / "one" / "supernet.params", kind="supernet")
    two, _ = load_model(tmp_path / "two" / "supernet.params", kind="supernet")
    for b in (0, 1, 2):      # position 2's other candidates: stage 2 started from stage 1's weights, never moved them
        for p, q in zip(one.candidates[2][b].collect_params().values(), two.candidates[2][b].collect_params().values()):
            if not p.name.endswith(("running_mean", "running_var")):
                np.testing.assert_array_equal(p.data(mx.cpu()).asnumpy(), q.data(mx.cpu()).asnumpy(), err_msg=p.name)
