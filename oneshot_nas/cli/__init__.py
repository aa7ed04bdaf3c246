"""What every entry point shares: logging to the console (and a file), one-line errors, help that
shows defaults, and clear messages for the flags of other tools."""
import argparse
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the help formatter below, whose errors (an unknown flag, a bad number) are one
    line like every other error: 'error: argument --lr: 'nan' is not a finite number (see --help)'."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows every option's default, once (an option whose
    help already speaks of its default, or that has none, shows nothing more)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.option_strings and default is not None and default is not False and default != ""
                and default is not argparse.SUPPRESS and "default" not in text.lower()):
            text += " (default: %(default)s)"
        return text


class Renamed(argparse.Action):
    """A flag of another tool (gluoncv's scripts, the OneShot+ scripts) that this one spells
    differently or does not need: using it stops with one line saying what to use instead."""

    def __init__(self, option_strings, dest, advice, nargs="?", **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, help=argparse.SUPPRESS, **kwargs)
        self.advice = advice

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError(f"{option_string} is not a flag of {parser.prog}: {self.advice}")


def renamed(parser, flag, advice, nargs="?"):
    """Make `flag` stop with `advice` (e.g. 'use --resume with the run's --save-dir')."""
    parser.add_argument(flag, action=Renamed, advice=advice, nargs=nargs, dest=f"_renamed_{flag.strip('-')}")
