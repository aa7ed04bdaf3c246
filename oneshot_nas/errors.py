"""The one exception type a user should ever see from oneshot-nas.

Entry points catch `UserError` and print its message alone, without a traceback: every message
names the problem and the fix. The package speaks of its own settings; a message may name the
settings it concerns (`settings=`), and an entry point shows them as the flags users type
(num_classes -> --num-classes). Anything else escaping is a bug in oneshot-nas.
"""


class UserError(Exception):
    """Bad input from the user (a file, a flag, an architecture, a budget), with a clear message."""

    def __init__(self, message, settings=()):
        super().__init__(message)
        self.settings = (settings,) if isinstance(settings, str) else tuple(settings)


class ArchitectureError(UserError, ValueError):
    """An architecture or search space that is not valid."""
