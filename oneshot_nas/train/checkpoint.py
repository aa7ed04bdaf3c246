"""Checkpoints that resume a run exactly: parameters, optimizer states, epoch, sampler and RNG state.

A checkpoint is a folder `<run>/checkpoint/` holding
    model.params + model.json   the network (modelfile contract, so tools can read it directly)
    trainer.states              optimizer states (momentum) and the optimizer itself
    teacher.params              Pi-NAS's mean teacher, when it is trained
    state.json                  epoch done, update count, numpy RNG state, sampler state, schedule
It is written to a temporary folder and swapped in, so a crash while saving leaves the previous
checkpoint intact.
"""
import json
import shutil
from pathlib import Path

from ..errors import UserError
from ..runs.modelfile import load_parameters, save_model
from ..runs.rundir import writing

FOLDER = "checkpoint"


def save_checkpoint(run_path, net, trainer, state, files=None):
    """`files` ({name: save(path)}) are more files of the run's method (e.g. Pi-NAS's teacher)."""
    run_path = Path(run_path)
    final, tmp, old = (run_path / FOLDER, run_path / f"{FOLDER}.tmp", run_path / f"{FOLDER}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    with writing("the checkpoint (the previous one is kept)", run_path, cleanup=[tmp]):
        tmp.mkdir(parents=True)
        save_model(net, tmp / "model.params")
        trainer.save_states(str(tmp / "trainer.states"))
        for name, save in (files or {}).items():
            save(tmp / name)
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_json_default) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(run_path):
    """The checkpoint folder of a run (the previous one if a save was cut short), or None."""
    for name in (FOLDER, f"{FOLDER}.old"):
        folder = Path(run_path) / name
        if (folder / "state.json").is_file():
            return folder
    return None


def load_checkpoint(folder, net, trainer, contexts):
    """Load parameters and optimizer states into `net` and `trainer`; returns the state dict."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"the checkpoint in {folder} cannot be read ({err}); start again with "
                        "again", settings="overwrite") from None
    load_parameters(net, folder / "model.params", contexts)
    trainer.load_states(str(folder / "trainer.states"))
    return state


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")
