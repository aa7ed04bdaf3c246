"""python -m oneshot_nas.launch [launch.py flags] COMMAND...: MXNet's parameter-server launcher.

The flags are those of `<mxnet>/tools/launch.py` (-n WORKERS -s SERVERS --launcher local|ssh|mpi
-H HOSTFILE ...). With `--launcher local` the job runs watched (oneshot_nas/runs/launcher.py): when a
worker or server dies, every other process of the job is stopped within seconds and one line says
who died and how to resume, where MXNet's own local launcher would wait forever. The other launchers
run MXNet's launch.py unchanged but for one fix: the dmlc tracker bundled with mxnet 1.9.1 calls
`Thread.isAlive`, which Python 3.9 removed, so the stock launcher dies on Python 3.11 right after
starting the scheduler.
"""
import argparse
import importlib.util
import logging
import os
import runpy
import sys
import threading


def launcher_path():
    """MXNet's launch.py, found without importing mxnet (an import would be slow here)."""
    spec = importlib.util.find_spec("mxnet")
    return os.path.join(os.path.dirname(spec.origin), "tools", "launch.py")


def _pairs(values):
    out = {}
    for item in values:
        key, _, value = item.partition(":")
        out[key] = value
    return out


def local_args(argv):
    """The flags of a local job (the stock launcher's names), or None for another launcher."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-n", "--num-workers", type=int)
    parser.add_argument("-s", "--num-servers", type=int)
    parser.add_argument("--launcher", default="ssh")
    parser.add_argument("--env-server", action="append", default=[])
    parser.add_argument("--env-worker", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args, unknown = parser.parse_known_args(argv)
    if args.launcher != "local" or args.num_workers is None or unknown or not args.command:
        return None
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    local = local_args(argv)
    if local is not None:
        from .runs.launcher import run_local
        logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
        servers = local.num_servers if local.num_servers is not None else local.num_workers
        sys.exit(run_local(local.command, local.num_workers, servers, _pairs(local.env_worker),
                           _pairs(local.env_server)))
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive
    path = launcher_path()
    sys.argv = [path] + argv
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
