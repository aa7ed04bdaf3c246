"""What decides whether a run can be resumed: its resolved settings, minus those marked free.

A settings dataclass marks a field that may change between a run and its resumption (where outputs
go, how many workers decode, how long to run) with `free(default)`; every other field is part of
the fingerprint, so a new setting is checked on resume unless someone decides otherwise. The same
check serves training and search.
"""
from dataclasses import MISSING, field, fields, is_dataclass

from ..errors import UserError

FREE = "free on resume"


def free(default=MISSING, **kwargs):
    """A dataclass field that may differ between a run and its resumption."""
    return field(default=default, metadata={FREE: True}, **kwargs)


def fingerprint(settings):
    """{name: value} of every field of `settings` not marked free, as JSON-able values (nested
    dataclasses become dicts, tuples lists)."""
    return {f.name: _plain(getattr(settings, f.name)) for f in fields(settings) if not f.metadata.get(FREE)}


def _plain(value):
    if is_dataclass(value):
        return fingerprint(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def differences(old, new, prefix=""):
    """['name was X, now Y', ...] between two fingerprints (nested dicts compared key by key)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} was {_short(a)}, now {_short(b)}")
    return out


def check_same(old, new, what):
    """Refuse to resume `what` when the fingerprints differ, naming every setting that does."""
    changed = differences(old, new)
    if changed:
        raise UserError(f"cannot resume {what}: it was started with other settings, so it would not "
                        f"continue the same way: {'; '.join(changed)}. Resume with the original "
                        "settings (see args.json in the run folder) or start the run again",
                        settings="overwrite")


def _short(value):
    text = repr(value) if isinstance(value, str) else str(value)
    return text[:60] + "..." if len(text) > 60 else text
