"""What every entry point shares: logging to the console (and a file), and one-line errors."""
import logging
import sys

from ..errors import UserError


def setup_logging(logfile=None, level=logging.INFO):
    """Log to stderr and, if given, to `logfile` (appending, so a resumed run keeps one log)."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile, mode="a"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", handlers=handlers, force=True)


def describe(err):
    """The message of a UserError with the flags of the settings it names, e.g. '... (--num-classes)'."""
    flags = " / ".join(f"--{name.replace('_', '-')}" for name in err.settings)
    return f"{err} ({flags})" if flags else str(err)


def run(main, argv=None):
    """Call `main(argv)`; a UserError prints as one line ('error: ...') and exits with status 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {describe(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
