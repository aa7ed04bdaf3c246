"""The latency table: measured per signature, saved in the contract format, summed for prediction."""
import json

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.cost import timing
from oneshot_nas.cost.counting import space_key
from oneshot_nas.cost.latency import FORMAT, LatencyTable, default_path
from oneshot_nas.cost.timing import calibrate_table, error_summary, measure_table, prediction_report
from oneshot_nas.errors import UserError
from oneshot_nas.space import get_space
from profiling import latency_table
from tests.test_space import random_arch

# a small space that keeps every feature: a repeated context (positions 1 and 2), SE, hard-swish
SMALL = get_space("tiny").derive("tiny-lat", stage_repeats=(3, 1, 1, 1), blocks=("SNB-3", "SXB-3"),
                                 channel_scales=(0.5, 1.0))
CONTRACT = {"format", "space", "space_key", "space_config", "device", "batch_size", "dtype", "unit",
            "stem_ms", "head_ms", "blocks_ms"}


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
        return measure_table(SMALL, mx.cpu(), batch_size=1, repeats=3, warmup=1)
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
    calibrate_table(raw, mx.cpu(), 2, 3, 1)
    scale = raw.extra["calibration"]["scale"]
    assert 0.2 < scale < 5 and raw.extra["calibration"]["archs"] == 2
    np.testing.assert_allclose(raw.blocks_ms, table.blocks_ms * scale)
    assert raw.stem_ms == pytest.approx(table.stem_ms * scale)
    assert "calibration" in table.extra     # measure_table calibrates by default


def test_prediction_report(table, rng):
    archs = [random_arch(SMALL, rng) for _ in range(2)]
    rows = prediction_report(table, archs, mx.cpu(), repeats=3, warmup=1)
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
                                  "--repeats", "2", "--warmup", "1", "--no-progress"])
    assert results[0]["path"] == str(default_path(SMALL, "cpu", 1))
    assert LatencyTable.load(results[0]["path"], SMALL).extra["repeats"] == 2
    with pytest.raises(UserError, match="measured on cpu at batch 1"):
        latency_table.main(["--space", str(space_file), "--out", str(saved), "--report", "1",
                            "--batch-size", "2"])
    with pytest.raises(UserError, match="preset name or a JSON"):
        latency_table.main(["--space", str(tmp_path / "none.json")])
    with pytest.raises(UserError, match="unknown search space"):
        latency_table.main(["--space", "nope"])
