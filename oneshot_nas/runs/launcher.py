"""A watched parameter-server job on this machine: scheduler, servers and workers as processes,
and the whole job stopped when one of them dies.

MXNet's local launcher (dmlc tracker) starts the same processes, but when a worker dies the others
wait for it at the next kvstore barrier forever, and so do the servers, the scheduler and the
launcher. Here every process is watched: when one ends with a failure (killed, crashed, stopped on
bad input) the others are stopped within a bounded time, and one line says who ended and how to
go on. The environment each role gets is the one dmlc's tracker gives (DMLC_ROLE, DMLC_NUM_WORKER,
DMLC_NUM_SERVER, DMLC_PS_ROOT_URI/PORT, DMLC_TASK_ID); MXNet runs the scheduler and the servers
inside `import mxnet`, so every role runs the same command.
"""
import logging
import os
import signal
import socket
import subprocess
import time

log = logging.getLogger("oneshot_nas.launch")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Job:
    """The processes of one job: (role, rank, Popen)."""

    def __init__(self, command, num_workers, num_servers, env_worker=(), env_server=()):
        base = dict(os.environ, DMLC_NUM_WORKER=str(num_workers), DMLC_NUM_SERVER=str(num_servers),
                    DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(free_port()),
                    DMLC_JOB_CLUSTER="local")
        roles = [("scheduler", 0, {})] + [("server", i, dict(env_server)) for i in range(num_servers)] + \
                [("worker", i, dict(env_worker)) for i in range(num_workers)]
        self.procs = []
        for role, rank, extra in roles:
            env = dict(base, DMLC_ROLE=role, DMLC_TASK_ID=str(rank), **extra)
            # a session of its own: stopping the job stops whatever the process started as well
            self.procs.append((role, rank, subprocess.Popen(command, env=env, start_new_session=True)))

    def failed(self):
        """The first process that ended with a failure, or None."""
        for role, rank, proc in self.procs:
            if proc.poll() not in (None, 0):
                return role, rank, proc
        return None

    def workers_done(self):
        return all(proc.poll() == 0 for role, _, proc in self.procs if role == "worker")

    def alive(self):
        return [(role, rank, proc) for role, rank, proc in self.procs if proc.poll() is None]

    def stop(self, grace=10.0):
        """SIGTERM every process still running, SIGKILL what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for _, _, proc in self.alive():
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        return not self.alive()


def describe(role, rank, proc):
    code = proc.returncode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}")
    return f"{role} {rank} (pid {proc.pid}) {how}"


def run_local(command, num_workers, num_servers, env_worker=(), env_server=(), poll=0.2, grace=10.0,
              linger=60.0):
    """Run the job and watch it; returns the exit status (0 when every worker finished)."""
    job = Job(command, num_workers, num_servers, env_worker, env_server)
    log.info("job of %d worker(s) and %d server(s): %s", num_workers, num_servers,
             ", ".join(f"{role} {rank} pid {proc.pid}" for role, rank, proc in job.procs))
    try:
        while True:
            bad = job.failed()
            if bad is not None:
                others = len(job.alive())
                job.stop(grace)
                log.error("%s; stopped the %d other process(es) of the job. If the run had saved a "
                          "checkpoint, continue it with the same command and --resume (same --save-dir)",
                          describe(*bad), others)
                code = bad[2].returncode
                return code if code > 0 else 1
            if job.workers_done():
                deadline = time.monotonic() + linger    # the servers and scheduler end after the workers
                while job.alive() and time.monotonic() < deadline:
                    time.sleep(poll)
                if job.alive():
                    log.warning("the servers and scheduler did not end %.0f s after the workers; "
                                "stopping them", linger)
                    job.stop(grace)
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        job.stop(grace)
        log.error("interrupted: stopped every process of the job")
        return 130
