"""Claims on units of work: one owner at a time, even for processes racing; a dead owner's claim is
taken over, a live one's never."""
import json
import os
import subprocess
import sys
import time

from oneshot_nas.runs.claims import Claims
from tests.conftest import ROOT


def test_a_unit_has_one_owner_until_released(tmp_path):
    claims = Claims(tmp_path)
    first = claims.acquire("a")
    assert first is not None and first.held()
    assert claims.acquire("a") is None                 # held by a live process (this one)
    assert claims.acquire("b") is not None
    assert claims.owner("a")["pid"] == os.getpid()
    first.release()
    assert not claims.path("a").exists()
    with claims.acquire("a") as again:
        assert again.held()
    assert not claims.path("a").exists()


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_claim_of_a_dead_process_is_taken_over(tmp_path):
    claims = Claims(tmp_path)
    claims.path("a").write_text(json.dumps({"host": claims.host, "pid": dead_pid(), "start": None, "token": "x"}))
    claim = claims.acquire("a")
    assert claim is not None and claims.owner("a")["pid"] == os.getpid()
    # a live process's claim stays, however old it is
    claims.path("b").write_text(json.dumps({"host": claims.host, "pid": os.getppid(), "token": "y"}))
    os.utime(claims.path("b"), (time.time() - 10_000, time.time() - 10_000))
    assert claims.acquire("b") is None


def test_another_hosts_claim_is_stale_only_without_heartbeat(tmp_path):
    claims = Claims(tmp_path, timeout=120, heartbeat=30)
    path = claims.path("a")
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "z"}))
    assert claims.acquire("a") is None                 # touched just now
    os.utime(path, (time.time() - 121, time.time() - 121))
    assert claims.acquire("a") is not None


def test_the_heartbeat_touches_a_held_claim(tmp_path):
    claims = Claims(tmp_path, timeout=120, heartbeat=0.05)
    with claims.acquire("a"):
        os.utime(claims.path("a"), (0, 0))
        time.sleep(0.3)
        assert time.time() - claims.path("a").stat().st_mtime < 5


RACE = """
import json, sys, time
from oneshot_nas.runs.claims import Claims
claims, got = Claims(sys.argv[1]), []
for unit in range(60):
    done = claims.folder / f"{unit}.done"     # stands for the stored result a worker checks
    if done.exists():
        continue
    claim = claims.acquire(str(unit))
    if claim is None:
        continue
    with claim:
        if done.exists():                     # finished between the check and the claim
            continue
        got.append(unit)
        time.sleep(0.002)                     # the work
        done.write_text("")
print(json.dumps(got))
"""


def test_racing_processes_never_share_a_unit(tmp_path):
    runs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(3)]
    got = [json.loads(r.communicate(timeout=60)[0]) for r in runs]
    assert sorted(u for g in got for u in g) == list(range(60))       # every unit once, none twice
