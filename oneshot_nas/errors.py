"""The one exception type a user should ever see from oneshot-nas.

Entry points catch `UserError` and print its message alone, without a traceback: every message
names the problem and the fix. Anything else escaping is a bug in oneshot-nas.
"""


class UserError(Exception):
    """Bad input from the user (a file, a flag, an architecture, a budget), with a clear message."""


class ArchitectureError(UserError, ValueError):
    """An architecture or search space that is not valid."""
