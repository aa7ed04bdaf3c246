"""python -m oneshot_nas.predict: the prediction command (its code is oneshot_nas/export/predict.py)."""
from .cli import run
from .export.predict import main

if __name__ == "__main__":
    run(main)
