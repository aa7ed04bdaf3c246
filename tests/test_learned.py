"""The learned path distribution of PARSEC / FP-NAS: sampling, REINFORCE, entropy-adaptive sample
counts and the coarse-to-fine switch."""
import json

import numpy as np
import pytest

from oneshot_nas.sample.learned import LearnedDistribution
from oneshot_nas.space import get_space


@pytest.fixture
def dist():
    return LearnedDistribution(get_space("tiny4"))


def test_draws_follow_the_probabilities_and_never_a_value_not_allowed(dist, rng):
    space = dist.space
    dist.logits[0][0] = [2.0, 0.0, -1.0, 0.5][:space.num_blocks]
    dist.allow(space.gene_choices(channels=(3, 5, 6)))
    draws = np.array([dist.sample(rng) for _ in range(20000)])
    blocks, channels = draws[:, :space.num_positions], draws[:, space.num_positions:]
    expected = dist.probs()[0][0]
    np.testing.assert_allclose(np.bincount(blocks[:, 0], minlength=space.num_blocks) / len(draws), expected, atol=0.01)
    assert set(np.unique(channels)) == {3, 5, 6}
    assert dist.probs()[1][2].tolist() == pytest.approx([0, 0, 0, 1 / 3, 0, 1 / 3, 1 / 3] + [0] * (space.num_scales - 7))


def test_the_number_of_samples_falls_as_the_entropy_falls(dist, rng):
    assert dist.samples_per_step(1, 8) == 8                   # uniform: the most
    counts = []
    for sharpness in (0.5, 1, 2, 4, 8, 16):
        for table in dist.logits:
            table[:] = 0
            table[:, 0] = sharpness
        counts.append(dist.samples_per_step(1, 8))
    assert counts == sorted(counts, reverse=True) and counts[0] == 8 > counts[3] and counts[-1] == 1
    assert dist.samples_per_step(3, 8) == 3                   # never below the floor


def test_reinforce_moves_probability_towards_the_better_path(dist, rng):
    good, bad = dist.sample(rng), dist.sample(rng)
    before = dist.log_prob(good) - dist.log_prob(bad)
    dist.update([good, bad], [1.0, 1.0], lr=1.0)              # equal rewards: no advantage, no change
    assert dist.log_prob(good) - dist.log_prob(bad) == pytest.approx(before)
    dist.update([good, bad], [-0.5, -1.5], lr=1.0)
    assert dist.log_prob(good) - dist.log_prob(bad) > before + 0.5


def test_on_a_toy_reward_the_distribution_finds_the_best_genes(dist, rng):
    target = dist.sample(np.random.default_rng(99))
    for _ in range(300):
        samples = [dist.sample(rng) for _ in range(4)]
        dist.update(samples, [float(np.mean(np.equal(s, target))) for s in samples], lr=2.0)
    modes = dist.summary()["dist_mode"]
    assert tuple(modes["blocks"] + modes["channels"]) == target
    assert dist.summary()["dist_entropy_share"] < 0.5


def test_the_switch_to_joint_keeps_the_distribution_then_learns_pairs(dist, rng):
    for table in dist.logits:
        table[:] = rng.normal(size=table.shape)
    genes = [dist.sample(rng) for _ in range(20)]
    before = [dist.log_prob(g) for g in genes]
    entropy, marginals = dist.entropy(), dist.probs()
    dist.to_joint()
    assert dist.joint and [dist.log_prob(g) for g in genes] == pytest.approx(before)
    assert dist.entropy() == pytest.approx(entropy)
    for a, b in zip(dist.probs(), marginals):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # a reward only for one (block, channel) pair at position 0: the joint table learns the pair
    pair = (genes[0][0], genes[0][dist.space.num_positions])
    for _ in range(200):
        samples = [dist.sample(rng) for _ in range(4)]
        dist.update(samples, [float((s[0], s[dist.space.num_positions]) == pair) for s in samples], lr=2.0)
    joint = dist._probs(dist.joint_logits, dist.joint_mask)[0].reshape(dist.sizes)
    assert joint[pair] > 0.5
    state = json.loads(json.dumps(dist.state_dict()))        # what a checkpoint stores
    again = LearnedDistribution(dist.space)
    again.load_state_dict(state)
    assert [again.log_prob(g) for g in genes] == [dist.log_prob(g) for g in genes]


# ----- in supernet training and in the search ------------------------------------------------------
@pytest.mark.parametrize("devices", [1, 2])
def test_a_learned_step_trains_its_paths_and_updates_the_distribution_with_their_losses(devices, rng):
    import copy

    import mxnet as mx

    from oneshot_nas.sample.learned import Learning
    from oneshot_nas.sample.schedule import channel_schedule
    from oneshot_nas.sample.training import PathSampler
    from oneshot_nas.train.loop import smoothed_cross_entropy, train_step
    from oneshot_nas.train.settings import ordered_params
    from oneshot_nas.train.tasks import SupernetTask
    from oneshot_nas.runs.workers import Workers
    from tests.test_train import one_batch, snapshot, supernet_on, totals_for
    space = get_space("tiny").derive("tiny-nodrop", dropout=0.0)       # the losses by hand see the same net
    contexts = [mx.cpu(i) for i in range(devices)]
    net = supernet_on(contexts, space)
    sync = Workers("device", devices)
    sync.register(ordered_params(net), contexts)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=None)
    sampler = PathSampler(space, learned=LearnedDistribution(space))
    task = SupernetTask(net, sampler, channel_schedule(space, 1), calibration=None,
                        learning=Learning(lr=3.0, samples=3, min_samples=3))
    task.start_epoch(0)
    paths = task.draw(rng)
    assert len(paths) == 3 and task.samples == [3]
    batch = one_batch(rng)
    xs = mx.gluon.utils.split_and_load(batch.data[0], contexts)      # each device its half, as the step
    ys = mx.gluon.utils.split_and_load(batch.label[0], contexts)
    with mx.autograd.record():          # training mode: batch statistics, as in the step
        rewards = [-sum(smoothed_cross_entropy(net(x, a), y).sum().asscalar() for x, y in zip(xs, ys)) / 16
                   for a in paths]
    expected = copy.deepcopy(sampler.learned)
    expected.update([a.genes for a in paths], rewards, 3.0)
    before = snapshot(net, contexts[-1])
    train_step(task, trainer, batch, contexts, paths, sync, 16, 0.0, totals_for(contexts))
    for got, want in zip(sampler.learned.logits, expected.logits):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not np.allclose(sampler.learned.logits[0], 0)
    after = snapshot(net, contexts[-1])
    names = {id(p): n for n, p in net._collect_params_with_prefix().items()}
    for p, row in enumerate(net.candidates):
        for b, block in enumerate(row):
            moved = any(not np.array_equal(before[names[id(q)]], after[names[id(q)]])
                        for q in block.collect_params().values() if q.grad_req != "null")
            assert moved == any(a.blocks[p] == b for a in paths), (p, b)    # every path trains, nothing else
