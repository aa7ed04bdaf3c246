"""Rank agreement: tau and rho as scipy computes them, precision@k as counted by hand, bootstrap
intervals that hold the estimate and narrow with more architectures, and the noise floor of seeds."""
import numpy as np
import pytest
from scipy import stats

from oneshot_nas import agreement
from oneshot_nas.errors import UserError


@pytest.mark.parametrize("n, ties", [(4, False), (9, True), (30, True), (60, False)])
def test_tau_and_rho_equal_scipys(n, ties, rng):
    for _ in range(5):
        a = rng.normal(size=n)
        b = a + rng.normal(size=n)
        if ties:    # accuracies of a table repeat (the same number of right answers)
            a, b = np.round(a), np.round(b * 2) / 2
        assert agreement.kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
        assert agreement.spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_the_search_summarys_tau_and_p_value():
    tau, p = agreement.kendall_tau_test([1, 2, 3, 4, 5], [10, 20, 30, 50, 40])
    assert (tau, p) == pytest.approx(tuple(stats.kendalltau([1, 2, 3, 4, 5], [10, 20, 30, 50, 40])))
    assert agreement.kendall_tau_test([1, 2], [1, 2]) is None
    assert agreement.kendall_tau_test([1, 1, 1], [1, 2, 3]) is None      # nothing to rank


def test_statistics_run_over_rows_of_resamples(rng):
    a, b = rng.normal(size=(7, 12)), rng.normal(size=(7, 12))
    many = agreement.kendall_tau(a, b)
    assert many.shape == (7,)
    assert many == pytest.approx([stats.kendalltau(x, y).statistic for x, y in zip(a, b)])
    assert agreement.spearman_rho(a, b) == pytest.approx([stats.spearmanr(x, y).statistic for x, y in zip(a, b)])
    assert np.isnan(agreement.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))     # nothing to rank


def test_precision_at_k_by_hand():
    truth = [0.90, 0.80, 0.70, 0.60, 0.50, 0.40]
    score = [0.10, 0.90, 0.80, 0.20, 0.70, 0.30]     # its top 3: #1, #2, #4; the true top 3: #0, #1, #2
    assert agreement.precision_at_k(score, truth, 1) == 0.0              # #1 is not the best
    assert agreement.precision_at_k(score, truth, 2) == 0.5              # {1, 2} vs {0, 1}
    assert agreement.precision_at_k(score, truth, 3) == pytest.approx(2 / 3)
    assert agreement.precision_at_k(truth, truth, 3) == 1.0


def test_top_k_counts_and_percentages():
    assert agreement.resolve_ks("5,10%,25%", 60) == [5, 6, 15]
    assert agreement.resolve_ks("5,10%,25%", 8, explicit=False) == [1, 2, 5]
    assert agreement.resolve_ks("5,10%", 4, explicit=False) == [1]        # 5 of 4 is dropped
    with pytest.raises(UserError, match="needs k below 4"):
        agreement.resolve_ks("5", 4)
    for bad in ("0", "x", "-3", "nan%", "0%", "150%"):
        with pytest.raises(UserError, match="top-k"):
            agreement.resolve_ks(bad, 60)


def correlated(rng, n, noise=1.0):
    truth = rng.normal(size=n)
    return truth + noise * rng.normal(size=n), truth


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_architectures(rng):
    widths = []
    for n in (20, 80, 320):
        score, truth = correlated(rng, n)
        result = agreement.agreement(score, truth, [max(1, n // 10)], np.random.default_rng(0), resamples=1000)
        for r in (result["kendall_tau"], result["spearman_rho"]):
            assert r["lo"] <= r["value"] <= r["hi"]
        assert result["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(score, truth).statistic)
        p = result["precision_at_k"][str(max(1, n // 10))]
        assert 0 <= p["lo"] <= p["value"] <= p["hi"] <= 1
        widths.append(result["kendall_tau"]["hi"] - result["kendall_tau"]["lo"])
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] > 1.7 * widths[2]     # about sqrt(16) = 4x in theory


def test_bootstrap_replays_from_its_seed(rng):
    score, truth = correlated(rng, 25)
    first = agreement.agreement(score, truth, [3], np.random.default_rng(7), resamples=500)
    assert agreement.agreement(score, truth, [3], np.random.default_rng(7), resamples=500) == first
    assert agreement.agreement(score, truth, [3], np.random.default_rng(8), resamples=500) != first


def test_noise_floor_by_hand():
    acc = np.array([[0.90, 0.92], [0.80, 0.84], [0.70, 0.69], [0.60, 0.66]])
    noise = agreement.noise_floor(acc, np.random.default_rng(0), resamples=1000)
    std = np.std(acc, axis=1, ddof=1)
    assert noise["seed_std_mean"] == pytest.approx(std.mean())
    assert noise["seed_std_max"] == pytest.approx(std.max())
    assert noise["spread"] == pytest.approx(np.std(acc.mean(1), ddof=1))
    assert noise["tau_between_seeds"]["mean"] == 1.0 and noise["tau_between_seeds"]["pairs"] == 1
    # seed 1 swaps the last two: tau between seeds drops; the bootstrap of the means sees it too
    swapped = acc.copy()
    swapped[2, 1], swapped[3, 1] = 0.60, 0.71
    noisy = agreement.noise_floor(swapped, np.random.default_rng(0), resamples=1000)
    between = stats.kendalltau(swapped[:, 0], swapped[:, 1]).statistic
    assert noisy["tau_between_seeds"]["mean"] == pytest.approx(between)
    assert noisy["tau_resampled"]["mean"] < noise["tau_resampled"]["mean"] == 1.0
    assert noisy["tau_resampled"]["lo"] <= noisy["tau_resampled"]["mean"] <= noisy["tau_resampled"]["hi"]


def test_noise_floor_grows_with_seed_noise(rng):
    means = rng.uniform(0.6, 0.9, size=40)
    floors = [agreement.noise_floor(means[:, None] + sigma * rng.normal(size=(40, 3)), np.random.default_rng(0),
                                    resamples=500)
              for sigma in (0.005, 0.05)]
    assert floors[0]["tau_resampled"]["mean"] > floors[1]["tau_resampled"]["mean"]
    assert floors[0]["tau_between_seeds"]["mean"] > floors[1]["tau_between_seeds"]["mean"]


def test_one_seed_has_no_seed_noise_to_report():
    noise = agreement.noise_floor([[0.9], [0.8], [0.7]], np.random.default_rng(0))
    assert noise["tau_between_seeds"] is None and noise["tau_resampled"] is None and noise["seed_std_mean"] is None
    assert noise["spread"] == pytest.approx(0.1)
