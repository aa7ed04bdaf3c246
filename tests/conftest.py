import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tables are cached under a throwaway folder, never in the user's ~/.cache."""
    os.environ["ONESHOT_NAS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """A slice of the embedded digits (256 train / 96 val images) as its own RecordIO pair."""
    from tests.test_train import small_digits
    return small_digits(tmp_path_factory.mktemp("small-digits"))


@pytest.fixture(scope="session")
def truth_table(small, tmp_path_factory):
    """(folder, summary) of a real ground-truth table on `small`: 2 drawn architectures + 1
    included, 2 seeds, 1 epoch each (tests/test_groundtruth.py and tests/test_ranking.py use it)."""
    from tests.test_groundtruth import truth
    root = tmp_path_factory.mktemp("truth")
    return root, truth(small, root / "table", cache=root / "cache")
