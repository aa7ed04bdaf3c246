"""Claims on shared units of work, so several processes (or machines) share one list without doing a unit twice.

A process claims a unit by creating FOLDER/<unit>.claim with O_CREAT | O_EXCL: exactly one creator
succeeds (on a local file system, and on NFS v3 and later). The file names its owner (host, pid,
the process's start time, a random token); while the work runs, a daemon thread touches it every
`heartbeat` seconds. Releasing removes it (only if it is still the owner's). A claim is stale, and
is taken over by the next process that wants the unit, when

- its owner is a process of this host that no longer runs (or whose pid now belongs to a process
  started at another time), or
- its owner is on another host and the file has not been touched for `timeout` seconds.

Taking over is guarded by a second O_EXCL file (<unit>.takeover), so two processes never take over
the same stale claim; a guard left by a process that died within those few lines is ignored after
`GUARD_SECONDS`.
"""
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
GUARD_SECONDS = 60.0


def _start_time(pid):
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _running(pid, start):
    """Whether process `pid` of this host runs, and is the one started at `start` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                      # it exists, under another user
    return start is None or _start_time(pid) in (None, start)


class Claim:
    """A unit of work held by this process; a context manager that releases it."""

    def __init__(self, path, token, heartbeat):
        self.path, self.token = Path(path), token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _beat(self, every):
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:       # taken over (we were presumed dead) or the folder went away
                return

    def held(self):
        """Whether the claim file is still this claim's (not taken over as stale)."""
        return _read(self.path).get("token") == self.token

    def release(self):
        self._stop.set()
        if self.held():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read(path):
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


class Claims:
    """The claims of one shared list of work in `folder`."""

    def __init__(self, folder, timeout=600.0, heartbeat=30.0):
        if heartbeat <= 0 or timeout <= heartbeat:
            raise ValueError("a claim's timeout must exceed its heartbeat, which must be > 0")
        self.folder, self.timeout, self.heartbeat = Path(folder), timeout, heartbeat
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.start = _start_time(self.pid)

    def path(self, unit):
        return self.folder / f"{unit}.claim"

    def acquire(self, unit):
        """A Claim on `unit`, or None when a live process holds it."""
        path = self.path(unit)
        claim = self._create(path)
        if claim is None and self.stale(path):
            claim = self._take_over(path)
        return claim

    def wait(self, unit, poll=0.05):
        """A Claim on `unit`, waiting (polling) while another process holds it (e.g. a short lock)."""
        while True:
            claim = self.acquire(unit)
            if claim is not None:
                return claim
            time.sleep(poll)

    def owner(self, unit):
        """The owner record of a claim ({} when unclaimed or unreadable)."""
        return _read(self.path(unit))

    def stale(self, path):
        """Whether the claim at `path` belongs to a dead process (see the module docstring)."""
        try:
            touched = path.stat().st_mtime
        except FileNotFoundError:
            return False
        owner = _read(path)
        if owner.get("host") == self.host and isinstance(owner.get("pid"), int):
            return not _running(owner["pid"], owner.get("start"))
        if not owner and time.time() - touched < GUARD_SECONDS:
            return False          # being written by its creator this very moment
        return time.time() - touched > self.timeout

    def _create(self, path):
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "w") as f:
            json.dump({"host": self.host, "pid": self.pid, "start": self.start, "token": token,
                       "since": round(time.time(), 3)}, f)
        return Claim(path, token, self.heartbeat)

    def _take_over(self, path):
        guard = path.with_suffix(".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > GUARD_SECONDS:
                    guard.unlink()            # its taker died half-way; the next attempt proceeds
            except FileNotFoundError:
                pass
            return None
        try:
            if not self.stale(path):          # someone else took it over in the meantime
                return None
            log.info("taking over the stale claim %s (%s)", path.name, _read(path))
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            return self._create(path)
        finally:
            guard.unlink()
