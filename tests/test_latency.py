"""The latency table: measured per signature, saved in the contract format, summed for prediction;
the timing protocol (interleaved rounds, a robust statistic, the calibration fit) on a fake clock."""
import json
import logging
import os
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.cost import timing
from oneshot_nas.cost.counting import space_key
from oneshot_nas.cost.latency import FORMAT, LatencyTable, Protocol, default_path, pin_threads
from oneshot_nas.cost.timing import (apply_calibration, calibrate_table, calibration_archs, error_summary,
                                     fit_calibration, measure_table, prediction_report, robust_ms,
                                     time_items)
from oneshot_nas.errors import UserError
from oneshot_nas.space import get_space
from profiling import latency_table
from tests.test_space import random_arch

# a small space that keeps every feature: a repeated context (positions 1 and 2), SE, hard-swish
SMALL = get_space("tiny").derive("tiny-lat", stage_repeats=(3, 1, 1, 1), blocks=("SNB-3", "SXB-3"),
                                 channel_scales=(0.5, 1.0))
CONTRACT = {"format", "space", "space_key", "space_config", "device", "batch_size", "dtype", "unit",
            "stem_ms", "head_ms", "blocks_ms"}
FAST = Protocol(warmup=1, rounds=2, repeats=2)     # the protocol at its smallest that still has rounds


class _CountingChoiceBlock(timing.ChoiceBlock):
    built = []

    def __init__(self, choice, position, max_mid, **kwargs):
        super().__init__(choice, position, max_mid, **kwargs)
        _CountingChoiceBlock.built.append((position.index, choice.name, max_mid))


@pytest.fixture(scope="module")
def table():
    patch = pytest.MonkeyPatch()
    patch.setattr(timing, "ChoiceBlock", _CountingChoiceBlock)
    try:
        return measure_table(SMALL, mx.cpu(), batch_size=1, protocol=FAST)
    finally:
        patch.undo()


def test_each_signature_is_measured_once(table):
    positions = SMALL.positions
    assert timing.signature(positions[1]) == timing.signature(positions[2])
    assert len({timing.signature(p) for p in positions}) == 5 == table.extra["signatures"]
    # 5 signatures x 2 blocks x 2 widths, each built and timed once; position 2 reuses position 1
    assert len(_CountingChoiceBlock.built) == 20
    assert 2 not in {p for p, _, _ in _CountingChoiceBlock.built}
    assert table.blocks_ms[1].tolist() == table.blocks_ms[2].tolist()
    assert table.blocks_ms.shape == (6, 2, 2) and np.isfinite(table.blocks_ms).all()
    assert (table.blocks_ms >= 0).all() and table.stem_ms > 0 and table.head_ms >= 0


def test_round_trip_and_prediction_is_the_sum(table, tmp_path, rng):
    path = table.save(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert CONTRACT <= set(data)
    assert (data["format"], data["space"], data["space_key"], data["device"], data["batch_size"],
            data["dtype"], data["unit"]) == (FORMAT, "tiny-lat", space_key(SMALL), "cpu", 1,
                                             "float32", "ms")
    assert np.asarray(data["blocks_ms"]).shape == (6, 2, 2)
    loaded = LatencyTable.load(path, SMALL)
    assert loaded.to_dict() == table.to_dict()
    archs = [random_arch(SMALL, rng) for _ in range(5)]
    for arch in archs:
        by_hand = data["stem_ms"] + data["head_ms"] + sum(
            data["blocks_ms"][p][b][c] for p, (b, c) in enumerate(zip(arch.blocks, arch.channels)))
        assert loaded.predict_ms(arch) == pytest.approx(by_hand, rel=1e-12)
    many = loaded.predict_many([a.blocks for a in archs], [a.channels for a in archs])
    np.testing.assert_allclose(many, [loaded.predict_ms(a) for a in archs], rtol=1e-12)
    # the default location is keyed by space, device and batch size, under the cache folder
    assert table.save() == default_path(SMALL, "cpu", 1)
    assert default_path(SMALL, "gpu(0)", 8).name == f"{space_key(SMALL)}-gpu0-bs8.json"


def test_calibration_scales_every_entry_by_the_end_to_end_ratio(table):
    raw = LatencyTable(SMALL, table.device, 1, table.stem_ms, table.head_ms, table.blocks_ms)
    calibrate_table(raw, mx.cpu(), 2, FAST, fit="scale")
    scale = raw.extra["calibration"]["scale"]
    assert raw.extra["calibration"]["offset_ms"] == 0 and raw.extra["calibration"]["fit"] == "scale"
    assert 0.2 < scale < 5 and raw.extra["calibration"]["archs"] == 2
    np.testing.assert_allclose(raw.blocks_ms, table.blocks_ms * scale)
    assert raw.stem_ms == pytest.approx(table.stem_ms * scale)
    assert "calibration" in table.extra     # measure_table calibrates by default


def test_prediction_report(table, rng):
    archs = [random_arch(SMALL, rng) for _ in range(2)]
    rows = prediction_report(table, archs, mx.cpu(), protocol=FAST)
    assert [r["arch"] for r in rows] == [str(a) for a in archs]
    for r in rows:
        assert r["measured_ms"] > 0
        assert r["error_pct"] == pytest.approx(100 * (r["predicted_ms"] - r["measured_ms"])
                                               / r["measured_ms"])
    mean, worst = error_summary(rows)
    assert worst == max(abs(r["error_pct"]) for r in rows) and mean <= worst


def test_bad_tables(table, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        LatencyTable.load(tmp_path / "none.json")
    path = table.save(tmp_path / "t.json")
    with pytest.raises(UserError, match="measured for space 'tiny-lat'"):
        LatencyTable.load(path, "tiny")
    with pytest.raises(UserError, match="of space 'tiny'"):
        table.predict_ms(random_arch("tiny", np.random.default_rng(0)))
    path.write_text("{broken")
    with pytest.raises(UserError, match="damaged"):
        LatencyTable.load(path)
    good = table.to_dict()
    for damage, message in [
            (lambda d: d.update(format="other"), "not a latency table"),
            (lambda d: d.pop("stem_ms"), "damaged"),
            (lambda d: d.update(blocks_ms=[[1.0]]), "blocks_ms of shape"),
            (lambda d: d.update(space_key="tiny-lat-000"), "space_key does not match")]:
        data = json.loads(json.dumps(good))
        damage(data)
        path.write_text(json.dumps(data))
        with pytest.raises(UserError, match=message):
            LatencyTable.load(path)


def test_cli_measures_saves_and_reports(table, tmp_path, capsys):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps({"space_config": SMALL.to_dict()}))
    saved = table.save(tmp_path / "t.json")
    results = latency_table.main(["--space", str(space_file), "--out", str(saved), "--report", "2",
                                  "--repeats", "2", "--warmup", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert "using the latency table" in out and "prediction error over 2 architectures" in out
    assert len(results[0]["rows"]) == 2 and results[0]["max_abs_pct"] >= results[0]["mean_abs_pct"]
    # measuring through the CLI saves to the default location
    results = latency_table.main(["--space", str(space_file), "--report", "1", "--remeasure",
                                  "--repeats", "2", "--warmup", "1", "--rounds", "2",
                                  "--calibration-archs", "3", "--calibration-fit", "scale", "--no-progress"])
    assert results[0]["path"] == str(default_path(SMALL, "cpu", 1))
    saved_table = LatencyTable.load(results[0]["path"], SMALL)
    assert saved_table.extra["repeats"] == 2
    assert saved_table.protocol == Protocol(warmup=1, rounds=2, repeats=2)
    assert saved_table.extra["calibration"]["fit"] == "scale" and saved_table.extra["calibration"]["archs"] == 3
    with pytest.raises(UserError, match="rounds, repeats and calls >= 1"):
        latency_table.main(["--space", str(space_file), "--rounds", "0"])
    with pytest.raises(UserError, match="measured on cpu at batch 1"):
        latency_table.main(["--space", str(space_file), "--out", str(saved), "--report", "1",
                            "--batch-size", "2"])
    with pytest.raises(UserError, match="preset name or a JSON"):
        latency_table.main(["--space", str(tmp_path / "none.json")])
    with pytest.raises(UserError, match="unknown search space"):
        latency_table.main(["--space", "nope"])


# ----- the protocol, on a fake clock (no timed tests) -------------------------------------------
class _FakeNet:
    """A 'network' that takes `ms` on the fake clock per call, and `slow_ms` more on the calls listed
    in `slow_calls` (foreign load); it records every call in the shared `log`."""

    def __init__(self, name, ms, clock, log, slow_calls=(), slow_ms=0.0):
        self.name, self.ms, self.clock, self.log = name, ms, clock, log
        self.slow_calls, self.slow_ms, self.calls = set(slow_calls), slow_ms, 0

    def __call__(self, x):
        self.clock.now += (self.ms + (self.slow_ms if self.calls in self.slow_calls else 0.0)) / 1e3
        self.calls += 1
        self.log.append(self.name)
        return SimpleNamespace(wait_to_read=lambda: None)


@pytest.fixture
def clock(monkeypatch):
    fake = SimpleNamespace(now=0.0)
    fake.perf_counter = fake.process_time = lambda: fake.now
    monkeypatch.setattr(timing, "time", fake)
    return fake


def test_robust_statistic_drops_a_slow_sample_and_a_slow_round():
    assert robust_ms([[1.0, 1.0, 1.0], [1.0, 50.0, 1.0], [1.0, 1.0, 1.0]]) == 1.0
    # foreign load for a whole round: the median over rounds ignores it, the min as well
    rounds = [[1.0, 1.1, 1.0], [9.0, 9.5, 9.0], [1.2, 1.2, 1.3]]
    assert robust_ms(rounds, "median") == 1.2 and robust_ms(rounds, "min") == 1.0
    # a plain mean over all samples would have been pulled up by the slow round
    assert np.mean(sum(rounds, [])) > 3


def test_time_items_interleaves_rounds_and_rejects_injected_load(clock):
    protocol = Protocol(warmup=2, rounds=3, repeats=5, calls=2, round_warmup=1)
    log = []
    # item "a": 2 ms a call, but its 7th..10th calls (all of its first round's timed calls after the
    # first) take 40 ms more; item "b": 0.5 ms, one slow call in its last round
    per_item = protocol.warmup + protocol.rounds * (protocol.round_warmup + protocol.repeats * protocol.calls)
    nets = [_FakeNet("a", 2.0, clock, log, slow_calls=range(6, 10), slow_ms=40.0),
            _FakeNet("b", 0.5, clock, log, slow_calls=[per_item - 3], slow_ms=100.0)]
    times = time_items([(net, None) for net in nets], protocol)
    assert times == pytest.approx([2.0, 0.5])
    assert log.count("a") == log.count("b") == per_item == 35
    # warm-up of every item first, then each round visits every item once, in a shuffled order
    rounds = log[2 * protocol.warmup:]
    chunk = protocol.round_warmup + protocol.repeats * protocol.calls
    visits = [rounds[i] for i in range(0, len(rounds), chunk)]
    assert len(visits) == 6 and all(sorted(visits[2 * r:2 * r + 2]) == ["a", "b"] for r in range(3))


def test_affine_calibration_recovers_a_known_linear_relation():
    summed = np.array([20.0, 24.0, 27.0, 31.0, 36.0, 40.0])
    measured = 1.5 + 1.1 * summed
    assert fit_calibration(summed, measured) == pytest.approx((1.1, 1.5))
    # the old single ratio cannot: it leaves an error that grows with the distance from the median
    scale, offset = fit_calibration(summed, measured, "scale")
    assert offset == 0 and scale == pytest.approx(np.median(measured / summed))
    # too few networks, or no spread to fit a slope on: the median ratio
    assert fit_calibration(summed[:2], measured[:2])[1] == 0
    assert fit_calibration([30.0, 30.0, 30.0], [33.0, 36.0, 30.0]) == pytest.approx((1.1, 0.0))
    assert fit_calibration([30.0, 31.0, 32.0], [33.0, 32.0, 31.0]) == pytest.approx((32 / 31, 0.0))
    with pytest.raises(UserError, match="calibration fit 'mean'"):
        fit_calibration(summed, measured, "mean")
    with pytest.raises(UserError, match="one measured time per summed one"):
        fit_calibration(summed, measured[:3])


def test_calibrated_table_predicts_the_fitted_line_and_keeps_the_format(table, tmp_path):
    raw = LatencyTable(SMALL, table.device, 1, table.stem_ms, table.head_ms, table.blocks_ms,
                       extra=dict(table.extra))
    archs = calibration_archs(SMALL, 4)
    summed = np.array([raw.predict_ms(a) for a in archs])
    measured = 0.8 + 1.25 * summed
    assert apply_calibration(raw, archs, measured) == pytest.approx((1.25, 0.8))
    # still stem + head + blocks: the offset is folded into the stem, every entry scaled
    np.testing.assert_allclose([raw.predict_ms(a) for a in archs], measured)
    np.testing.assert_allclose(raw.blocks_ms, table.blocks_ms * 1.25)
    loaded = LatencyTable.load(raw.save(tmp_path / "t.json"), SMALL)
    assert loaded.extra["calibration"] == pytest.approx(
        {"archs": 4, "seed": timing.CALIBRATION_SEED, "fit": "affine", "scale": 1.25, "offset_ms": 0.8})
    assert loaded.predict_ms(archs[0]) == pytest.approx(measured[0])


def test_a_fit_that_would_make_the_stem_negative_falls_back_to_the_median_ratio(table):
    raw = LatencyTable(SMALL, table.device, 1, 0.05, table.head_ms, table.blocks_ms, extra=dict(table.extra))
    archs = calibration_archs(SMALL, 4)
    summed = np.array([raw.predict_ms(a) for a in archs])
    measured = 1.5 * summed - 0.5 * summed.min()          # a line crossing zero well before the networks
    assert 0.05 * 1.5 + fit_calibration(summed, measured)[1] < 0       # the affine fit alone would
    scale, offset = apply_calibration(raw, archs, measured)
    assert offset == 0 and scale == pytest.approx(np.median(measured / summed))
    assert raw.stem_ms > 0 and raw.extra["calibration"]["fit"] == "scale"


def test_the_protocol_is_recorded_in_the_table_and_read_back(table, tmp_path):
    assert table.extra["protocol"] == FAST.to_dict() and table.protocol == FAST
    assert set(table.extra["threads_env"]) == {"OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS",
                                               "MXNET_ENGINE_TYPE"}
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"), SMALL)
    assert loaded.protocol == FAST and loaded.extra["threads_env"] == table.extra["threads_env"]
    older = LatencyTable(SMALL, "cpu", 1, 1.0, 1.0, table.blocks_ms)      # a table from before protocols
    assert older.protocol is None
    older.extra["protocol"] = {**FAST.to_dict(), "spin": 3}
    with pytest.raises(UserError, match="not one this version reads"):
        older.protocol


@pytest.mark.parametrize("change, message", [
    ({"rounds": 0}, "rounds, repeats and calls >= 1"), ({"calls": 0}, "rounds, repeats and calls >= 1"),
    ({"warmup": -1}, "warm-ups >= 0"), ({"statistic": "mean"}, "choose one of median, min"),
    ({"threads": 0}, "threads must be >= 1"), ({"clock": "tsc"}, "choose one of cpu, wall"),
    ({"threads": 2}, "one thread only"), ({"threads": None}, "one thread only")])
def test_a_bad_protocol_is_one_message(change, message):
    with pytest.raises(UserError, match=message):
        Protocol(**change)


def test_a_gpu_is_timed_by_the_wall_clock_only():
    with pytest.raises(UserError, match="time a GPU by the wall clock"):
        measure_table(SMALL, mx.gpu(0), protocol=Protocol())


def test_pin_threads_sets_the_environment_and_says_when_it_is_too_late(monkeypatch, caplog):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with caplog.at_level(logging.WARNING):
        settings = pin_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1" and settings["OMP_NUM_THREADS"] == "1"
    assert "takes effect in a new process only" in caplog.text      # MXNet is loaded in this process
    caplog.clear()
    assert pin_threads(None)["OMP_NUM_THREADS"] == "1" and pin_threads(1) and not caplog.text


def test_a_fake_quantized_space_gets_no_latency_table():
    from oneshot_nas.cost.timing import measure_table
    with pytest.raises(UserError, match="is fake-quantized"):
        measure_table("tiny4-q")
