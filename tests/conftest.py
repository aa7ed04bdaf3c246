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
