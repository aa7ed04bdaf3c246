"""python -m oneshot_nas.report: the pipeline report command (its code is oneshot_nas/runs/report.py)."""
from .cli import run
from .runs.report import main

if __name__ == "__main__":
    run(main)
