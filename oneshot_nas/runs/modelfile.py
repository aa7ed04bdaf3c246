"""Saved networks: NAME.params (Gluon parameters) with NAME.json beside it saying what they belong to.

- a supernet: {"kind": "supernet", "space": name, "space_config": {...}, "record": {...}}
- a subnet:   an architecture record (space.save_architecture) with "kind": "subnet"
- a reference net (nn/plain.py): {"kind": "reference", "name": "plain-8-16-32-64", "classes": 10}
- a superkernel network (Single-Path NAS, nn/superkernel.py): {"kind": "superkernel", "space": name,
  "space_config": {...}, "temperature": T, "arch": what it computes, "record": {...}}
`load_model` is the one way to read a network back: every tool that takes a .params file (search,
retraining from a supernet, score, export, predict) goes through it, so a missing file, a file of
the wrong kind or space, and parameters that do not fit each get the same one-line message.
"""
import json
from pathlib import Path

import mxnet as mx

from ..errors import ArchitectureError, UserError
from ..jsonfile import read_json
from ..nn.subnet import SubNet
from ..nn.superkernel import SuperkernelNet
from ..nn.supernet import SuperNet
from ..space import Architecture, SearchSpace, get_space
from .rundir import writing

KINDS = ("supernet", "subnet", "reference", "superkernel")


def json_beside(params_path):
    return Path(params_path).with_suffix(".json")


def save_model(net, path, record=None):
    """Save `net` (SuperNet or SubNet) to `path` (.params) and its description to the .json beside
    it. Both are written under temporary names and renamed, so a crash leaves no half file."""
    path = Path(path)
    with writing(path.name, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(net, SuperNet):
        meta = {"kind": "supernet", "space": net.space.name, "space_config": net.space.to_dict()}
        if record:
            meta["record"] = record
    elif isinstance(net, SubNet):
        meta = {**net.arch.to_dict(), **({"record": record} if record else {}), "kind": "subnet"}
    elif isinstance(net, SuperkernelNet):
        meta = {"kind": "superkernel", "space": net.space.name, "space_config": net.space.to_dict(),
                "temperature": net.temperature, "arch": str(net.architecture()),
                **({"record": record} if record else {})}
    elif hasattr(net, "reference_name"):
        meta = {"kind": "reference", "name": net.reference_name, "classes": net.reference_classes,
                **({"record": record} if record else {})}
    else:
        raise TypeError(f"save_model takes a SuperNet, a SubNet, a superkernel or a reference net, "
                        f"not {type(net).__name__}")
    tmp = path.with_name(path.name + ".tmp")
    meta_tmp = json_beside(path).with_name(json_beside(path).name + ".tmp")
    with writing(path.name, path.parent, cleanup=[tmp, meta_tmp]):
        net.save_parameters(str(tmp))
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(path)
        meta_tmp.replace(json_beside(path))
    return path


def read_meta(path, arch=None, space=None):
    """The description of a .params file: from the .json beside it, else from `arch` (a subnet's
    architecture) or `space` (a supernet's space name), which a file without its .json needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    meta_path = json_beside(path)
    if not meta_path.is_file() and arch is not None:
        return {"kind": "subnet", **arch.to_dict()}
    if not meta_path.is_file() and space is not None:
        space = get_space(space)
        return {"kind": "supernet", "space": space.name, "space_config": space.to_dict()}
    meta = read_json(meta_path, missing=f"{path} has no {meta_path.name} beside it saying which network "
                                        "it holds; give its architecture (models/NAME.json or the "
                                        "architecture string), or for a supernet its space",
                     invalid="{path} is not valid JSON ({err})")
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} does not describe a network (expected a JSON object)")
    meta.setdefault("kind", "subnet")
    if meta["kind"] not in KINDS:
        raise UserError(f"{meta_path}: unknown model kind {meta['kind']!r} (expected one of {', '.join(KINDS)})")
    return meta


def build_model(meta):
    """An uninitialised SuperNet, SubNet or reference net from a description (see read_meta)."""
    if meta["kind"] == "reference":
        from ..nn.plain import reference_net
        return reference_net(str(meta.get("name")), int(meta.get("classes", 0)))
    try:
        if meta["kind"] in ("supernet", "superkernel"):
            config = meta.get("space_config")
            space = SearchSpace.from_dict(config) if config else meta["space"]
            if meta["kind"] == "superkernel":
                return SuperkernelNet(space, temperature=float(meta.get("temperature", 1.0)))
            return SuperNet(space)
        return SubNet(Architecture.from_dict(meta))
    except ArchitectureError as err:
        raise UserError(f"the model description is not valid: {err}") from None


def load_model(path, kind=None, arch=None, space=None, ctx=None):
    """(net, meta): the network saved at `path`, its parameters loaded on `ctx` (a context or a
    list; default the CPU).

    kind:  'supernet' or 'subnet' to refuse the other kind with a message that says what to pass
           ('reference' to load a reference net; any other kind refuses one);
    arch:  for a subnet file without its .json, its architecture; with a .json, the architecture
           must be the one saved. For a supernet, the path the caller will use: it must be of the
           supernet's space (up to the number of classes).
    space: the space of a supernet file without its .json (a preset name or a SearchSpace).
    """
    path = Path(path)
    saved = json_beside(path).is_file()
    meta = read_meta(path, arch=None if kind == "supernet" else arch, space=space)
    if meta["kind"] == "reference" and kind != "reference":
        raise UserError(f"{path} holds the reference net {meta.get('name')} (trained to compare searched "
                        "architectures with, nn/plain.py), not a supernet or an architecture's network")
    if kind is not None and meta["kind"] != kind:
        what = {"supernet": "a weight-sharing supernet (supernet.params of a supernet training run)",
                "subnet": "one architecture's network (retrain or export a path of this supernet first)"}
        raise UserError(f"{path} holds a {meta['kind']}, but {what[kind]} is needed here")
    net = build_model(meta)
    if isinstance(net, SuperNet):
        if space is not None and saved and get_space(space) != net.space:
            raise UserError(f"{json_beside(path).name} says the supernet is of space {net.space.name!r}, "
                            f"not {get_space(space).name!r}; leave the space out")
        if arch is not None:
            arch.on(net.space, "the architecture")        # fails unless the spaces match
    elif arch is not None and not hasattr(net, "arch"):
        raise UserError(f"{path} holds the reference net {meta['name']}, not an architecture of a space")
    elif arch is not None and saved and net.arch != arch:
        raise UserError(f"the architecture {arch} differs from the one in {json_beside(path).name} "
                        f"({net.arch}); leave it out, or pass the parameters trained for it")
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    load_parameters(net, path, contexts)
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
        saved_shape = tuple(stripped[name].shape)
        fits = len(saved_shape) == len(param.shape) and all(d in (0, s) for d, s in zip(param.shape, saved_shape))
        if param.shape and not fits:      # (a 0 is a dimension a gluoncv net infers on its first call)
            raise UserError(f"{path} does not fit this {kind}: parameter {name} has shape "
                            f"{tuple(stripped[name].shape)} in the file but {tuple(param.shape)} in the "
                            "network. Is it the right file for this architecture/space?")
    net.load_parameters(str(path), ctx=ctx)
