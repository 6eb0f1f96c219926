"""The fault-injection suite: real servers and agents, killed, stopped, cut off and starved of disk
while jobs run; each test counts, with a :class:`ledger.Ledger`, that no acknowledged job is lost and
none runs twice.

Every test here gets the ``faults`` marker (``pytest -m faults`` runs them alone, ``-m 'not faults'``
leaves them out). The figures of each fault are printed at the end of the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent / "cluster"))  # hosts.py: namespaced test hosts

from hosts import TestNetwork, cleanup_stale, skip_or_fail, unavailable_reason  # noqa: E402
from ledger import CONFIG, MEASURED, Ledger  # noqa: E402

from wulfproc import Cluster, running_cluster  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("fault figures (acknowledged / present / ran / ran twice / lost)")
        for fig in MEASURED:
            terminalreporter.write_line(fig.line())


@pytest.fixture
def needs_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("this fault needs root (a tmpfs mount, or namespaced test hosts)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A server and one agent ('n1', 2 cpus) on this machine."""
    with running_cluster(tmp_path, config=CONFIG) as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ran.ids")


@pytest.fixture
def make_test_network(needs_root: None) -> Iterator[Callable[..., TestNetwork]]:
    """Namespaced test hosts (tests/cluster/hosts.py), removed after the test."""
    reason = unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    cleanup_stale()
    networks: list[TestNetwork] = []

    def make(hosts: int | Sequence[str] = 2, **kwargs: Any) -> TestNetwork:
        net = TestNetwork(hosts, **kwargs)
        networks.append(net)
        net.start()
        return net

    yield make
    for net in reversed(networks):
        net.close()
