"""Progress bars: a tqdm bar on a terminal, nothing elsewhere (logs keep the record)."""
import sys


def progress(items, enabled, desc):
    """`items`, wrapped in a tqdm bar when `enabled` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, leave=False)
