"""Saved networks: NAME.params (Gluon parameters) with NAME.json beside it saying what they belong to.

- a supernet: {"kind": "supernet", "space": name, "space_config": {...}, "record": {...}}
- a subnet:   an architecture record (space.save_architecture) with "kind": "subnet"
so `load_model("x.params")` rebuilds the right network without any other flag, and every tool that
takes a .params file (score, search, export, predict) reads the same contract.
"""
import json
from pathlib import Path

import mxnet as mx

from ..errors import UserError
from ..jsonfile import read_json
from ..space import Architecture, SearchSpace, save_architecture
from ..nn.subnet import SubNet
from ..nn.supernet import SuperNet


def json_beside(params_path):
    return Path(params_path).with_suffix(".json")


def save_model(net, path, record=None):
    """Save `net` (SuperNet or SubNet) to `path` (.params) and its description to the .json beside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(net, SuperNet):
        meta = {"kind": "supernet", "space": net.space.name, "space_config": net.space.to_dict()}
        if record:
            meta["record"] = record
        json_beside(path).write_text(json.dumps(meta, indent=2) + "\n")
    elif isinstance(net, SubNet):
        save_architecture(json_beside(path), net.arch, record)
        data = json.loads(json_beside(path).read_text())
        data["kind"] = "subnet"
        json_beside(path).write_text(json.dumps(data, indent=2) + "\n")
    else:
        raise TypeError(f"save_model takes a SuperNet or SubNet, not {type(net).__name__}")
    tmp = path.with_name(path.name + ".tmp")
    net.save_parameters(str(tmp))
    tmp.replace(path)
    return path


def read_meta(path, arch=None):
    """The description of a .params file: from the .json beside it, or from `arch` if given."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    if arch is not None:
        return {"kind": "subnet", **arch.to_dict()}
    meta_path = json_beside(path)
    meta = read_json(meta_path, missing=f"{path} has no {meta_path.name} beside it saying which network "
                                        "it holds; pass the architecture with --arch models/NAME.json",
                     invalid="{path} is not valid JSON ({err})")
    meta.setdefault("kind", "subnet")
    return meta


def build_model(meta):
    """An uninitialised SuperNet or SubNet from a description (see read_meta)."""
    if meta["kind"] == "supernet":
        config = meta.get("space_config")
        space = SearchSpace.from_dict(config) if config else meta["space"]
        return SuperNet(space)
    if meta["kind"] == "subnet":
        return SubNet(Architecture.from_dict(meta))
    raise UserError(f"unknown model kind {meta['kind']!r} (expected 'supernet' or 'subnet')")


def load_model(path, ctx=None, arch=None):
    """(net, meta): the network saved at `path`, its parameters loaded on `ctx` (default CPU).

    A parameter file that does not fit the network fails with the parameter and both shapes.
    """
    meta = read_meta(path, arch)
    net = build_model(meta)
    ctx = ctx or [mx.cpu()]
    load_parameters(net, path, ctx)
    return net, meta


def load_parameters(net, path, ctx):
    """net.load_parameters with one clear message for each way a file can fail to fit."""
    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError:
        raise UserError(f"{path} is not an MXNet parameter file (or it is damaged)") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} holds unnamed arrays, not Gluon parameters")
    expected = {name: p for name, p in net._collect_params_with_prefix().items()}
    stripped = {k.split(":", 1)[-1]: v for k, v in loaded.items()}
    missing = sorted(set(expected) - set(stripped))
    extra = sorted(set(stripped) - set(expected))
    kind = type(net).__name__
    if missing or extra:
        raise UserError(f"{path} does not fit this {kind}: "
                        + (f"it lacks {len(missing)} parameters (e.g. {missing[0]})" if missing else "")
                        + ("; " if missing and extra else "")
                        + (f"it has {len(extra)} unknown ones (e.g. {extra[0]})" if extra else "")
                        + ". Is it the right file for this architecture/space?")
    for name, param in expected.items():
        if param.shape and tuple(stripped[name].shape) != tuple(param.shape):
            raise UserError(f"{path} does not fit this {kind}: parameter {name} has shape "
                            f"{tuple(stripped[name].shape)} in the file but {tuple(param.shape)} in the "
                            "network. Is it the right file for this architecture/space?")
    net.load_parameters(str(path), ctx=ctx)
