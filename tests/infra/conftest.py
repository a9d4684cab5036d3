import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tfload import Tree  # noqa: E402


@pytest.fixture(scope="session")
def tree() -> Tree:
    return Tree()
