"""Fixtures for multi-node tests: namespaced test hosts on a private bridge (see hosts.py).

* ``test_network``: a started TestNetwork with 3 hosts (node1..node3), removed after the test.
  Other sizes: ``@pytest.mark.parametrize("test_network", [5], indirect=True)`` (or a list
  of host names instead of 5).
* ``make_test_network(hosts=3, **kwargs)``: a factory for more networks in one test.

Everything under tests/cluster gets the ``cluster`` marker.  Without root (or without
ip/unshare) the fixtures skip the test, except in CI (env CI set), where they fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hosts import Host, TestNetwork, cleanup_stale, skip_or_fail, unavailable_reason

from wulfproc import Cluster, free_port, running_cluster

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster_support() -> None:
    """Skip (fail in CI) unless namespaced test hosts can be built; clear dead runs' leftovers."""
    reason = unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    cleanup_stale()


@pytest.fixture
def make_test_network(cluster_support: None) -> Iterator[Callable[..., TestNetwork]]:
    networks: list[TestNetwork] = []

    def make(hosts: int | Sequence[str] = 3, **kwargs: Any) -> TestNetwork:
        net = TestNetwork(hosts, **kwargs)
        networks.append(net)
        net.start()
        return net

    yield make
    errors = []
    for net in reversed(networks):
        try:
            net.close()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def test_network(
    request: pytest.FixtureRequest, make_test_network: Callable[..., TestNetwork]
) -> TestNetwork:
    return make_test_network(getattr(request, "param", 3))


@pytest.fixture
def three(test_network: TestNetwork, shared_tmp: Path) -> Iterator[Cluster]:
    """A server on the bridge, and an agent with 2 cpus on each of node1..node3."""
    port = free_port(test_network.gateway)
    with running_cluster(shared_tmp, listen=f"{test_network.gateway}:{port}") as c:
        c.tcp = f"http://{test_network.gateway}:{port}"  # type: ignore[attr-defined]
        for host in test_network:
            start_agent(c, host)
        yield c


def start_agent(c: Cluster, host: Host, wait: bool = True) -> None:
    c.agent(host.name, cpus=2, server=c.tcp, popen=host.popen, wait=wait)  # type: ignore[attr-defined]
