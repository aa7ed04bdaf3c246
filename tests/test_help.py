"""Every command's --help: each option says what it does, and shows its default once."""
import re

import pytest

import search_singlepath
import search_supernet
import train_subnet
import train_supernet
from oneshot_nas import rank
from oneshot_nas.export import __main__ as export
from oneshot_nas.export import predict
from oneshot_nas.runs import report
from profiling import score

COMMANDS = {
    "train_supernet.py": (train_supernet.main, []),
    "train_subnet.py": (train_subnet.main, []),
    "search_supernet.py": (search_supernet.main, []),
    "search_singlepath.py": (search_singlepath.main, []),
    "rank truth": (rank.main, ["truth"]),
    "rank score": (rank.main, ["score"]),
    "rank compare": (rank.main, ["compare"]),
    "export": (export.main, []),
    "predict": (predict.main, []),
    "report": (report.main, []),
    "profiling/score.py": (score.main, []),
}


def options(text):
    """{signature: help text} of the options in an argparse help text."""
    entries, current = {}, None
    for line in text.splitlines():
        if re.match(r"^  -", line):                      # an option's first line
            signature, _, rest = line.strip().partition("  ")
            current = signature
            entries[current] = rest.strip()
        elif current and re.match(r"^ {3,}\S", line):    # its help, continued
            entries[current] = (entries[current] + " " + line.strip()).strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_its_default_once(name, capsys):
    main, argv = COMMANDS[name]
    with pytest.raises(SystemExit) as stop:
        main(argv + ["--help"])
    assert stop.value.code == 0
    found = options(capsys.readouterr().out)
    assert len(found) > 1, found
    for signature, text in found.items():
        if signature.startswith("-h"):
            continue
        assert text, f"{name}: {signature} has no help text"
        assert text.count("(default:") <= 1 and text.lower().count("default: ") <= 1, \
            f"{name}: {signature} shows its default twice: {text}"


def test_a_flag_with_a_default_shows_it(capsys):
    with pytest.raises(SystemExit):
        train_supernet.main(["--help"])
    found = {signature.split()[0]: text for signature, text in options(capsys.readouterr().out).items()}
    assert found["--lr"].endswith("(default: 0.1)") and found["--lr-mode"].endswith("(default: cosine)")
    assert "default" not in found["--resume"]             # a switch: nothing to show
