"""Importing gluoncv and torch in one process.

gluoncv 0.10.5 refuses to import when torch >= 2.0 is installed (its version check raises). It
imports fine while `sys.modules['torch']` is None; afterwards torch imports normally. Every module
that needs either goes through here.
"""
import importlib
import sys

from .errors import UserError


def import_gluoncv():
    """gluoncv, imported with torch hidden from its version check."""
    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    saved = sys.modules.get("torch", ...)
    sys.modules["torch"] = None
    try:
        return importlib.import_module("gluoncv")
    finally:
        if saved is ...:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved


def import_torch():
    """torch (no gluoncv, no MXNet)."""
    return require("torch", "torch==2.13.0")


def require(module, pip_name):
    """Import `module`, or fail with the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this needs the Python package {module!r}: pip install '{pip_name}' "
                        "(or rerun sh scripts/test.sh, which installs requirements.txt)") from None
