"""The strategy benchmark: its committed table, the resumable table file, and a few runs (no MXNet)."""
import json

import pytest

from oneshot_nas.bench.strategies import TABLE, Table, _resume_table, benchmark, members, subspace
from oneshot_nas.errors import UserError


def test_the_committed_table_scores_every_member_and_benchmarks_in_seconds():
    table = Table(TABLE)
    space, choices = subspace()
    assert len(table.truth) == len(members(choices)) == 4096 == len(set(table.genes))
    assert table.choices == choices and table.repeats == 512
    assert 0.01 < table.noise < 0.04                   # about the binomial spread of 287 images
    assert (table.top[0.01].sum(), table.top[0.001].sum()) == (48, 5)
    rows = benchmark(table, ["random", "regularized"], seeds=3, rescore_top=5)
    for spec, metrics, censored in rows:
        assert censored == 0 and set(metrics) == {"queries_1%", "queries_0.1%", "regret_100", "regret_300",
                                                  "regret_300_rescored"}
        mean, low, high = metrics["queries_0.1%"]
        assert 1 <= low <= mean <= high <= 4096
        assert all(0 <= metrics[k][0] <= 100 * (table.best - table.truth.min()) for k in metrics if "regret" in k)


def test_a_stopped_table_continues_where_it_stopped(tmp_path):
    header = {"format": "oneshot-nas-strategy-table-v1", "supernet": "a/x.params", "supernet_md5": "1", "members": 3}
    out = tmp_path / "table.jsonl"
    assert _resume_table(out, header) == set() and json.loads(out.read_text()) == header
    with open(out, "a") as f:
        f.write('{"arch": "A", "accuracy": 0.5}\n{"arch": "B", "accuracy": 0.6}\n{"arch": "C", "accu')
    assert _resume_table(out, {**header, "supernet": "b/x.params"}) == {"A", "B"}    # moved, same md5
    assert len(out.read_text().splitlines()) == 3 and out.read_text().endswith('0.6}\n')
    with pytest.raises(UserError, match=r"is a table made differently \(supernet_md5 differ\)"):
        _resume_table(out, {**header, "supernet_md5": "2"})
    with pytest.raises(UserError, match="scores 2 of 3 members; continue it with --make-table"):
        Table(out)
