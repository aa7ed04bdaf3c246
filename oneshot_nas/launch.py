"""python -m oneshot_nas.launch [launch.py flags] COMMAND...: MXNet's parameter-server launcher.

This runs `<mxnet>/tools/launch.py` unchanged (same flags: -n WORKERS -s SERVERS --launcher
local|ssh|mpi -H HOSTFILE ...). It exists because the dmlc tracker bundled with mxnet 1.9.1 calls
`Thread.isAlive`, which Python 3.9 removed, so the stock launcher dies on Python 3.11 right after
starting the scheduler; the alias below is the only change.
"""
import importlib.util
import os
import runpy
import sys
import threading


def launcher_path():
    """MXNet's launch.py, found without importing mxnet (an import would be slow here)."""
    spec = importlib.util.find_spec("mxnet")
    return os.path.join(os.path.dirname(spec.origin), "tools", "launch.py")


def main(argv=None):
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive
    path = launcher_path()
    sys.argv = [path] + list(sys.argv[1:] if argv is None else argv)
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
