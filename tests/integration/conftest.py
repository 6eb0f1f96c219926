from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wulfproc import Cluster, running_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A server and one agent ('n1', 2 cpus, 4 GB) on this machine."""
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=2)
        yield c
