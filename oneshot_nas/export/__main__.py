"""python -m oneshot_nas.export: the export command (oneshot_nas/export/formats.py)."""
from ..cli import run
from .formats import main

run(main)
