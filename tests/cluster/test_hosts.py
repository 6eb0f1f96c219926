"""Tests of the namespaced test hosts themselves (hosts.py, conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hosts import (
    DEFAULT_PREFIX,
    TEST_RANGE,
    Host,
    TestNetwork,
    TestNetworkError,
    cleanup_stale,
    leftovers,
    skip_or_fail,
)

PY = sys.executable
HERE = Path(__file__).resolve().parent


def py(host: Host, code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run Python code in the host; fail with its stderr if it fails."""
    result = host.run(
        [PY, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


# Generous: these wait for a signal to be delivered, which takes milliseconds; a loaded machine (or a
# stalled VM) must not fail the test, a signal that never arrives still does.
PATIENCE = 30.0


def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_gone(pid: int, timeout: float = PATIENCE) -> bool:
    return wait_until(lambda: gone(pid), timeout)


def ended(proc: subprocess.Popen[Any], what: str = "") -> int | None:
    """proc's return code once it ends; on timeout, fail saying what the entry process and its program
    were doing (so that a hang can be told from a slow machine)."""
    try:
        return proc.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        pass
    states = []
    for pid in [proc.pid, *_children(proc.pid)]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
            pending = [ln for ln in status.splitlines() if ln.startswith(("SigPnd", "ShdPnd", "SigBlk"))]
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            states.append(f"{pid}: state {stat[0]} wchan {wchan} {' '.join(pending)}")
        except OSError as e:
            states.append(f"{pid}: {e}")
    raise AssertionError(f"{what}: still running after {PATIENCE:g}s; " + "; ".join(states))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def gone(pid: int) -> bool:
    """pid has ended (zombies count as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@contextmanager
def tcp_server(address: str) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """A TCP server in the root namespace; yields (port, [(message, peer address)])."""
    received: list[tuple[str, str]] = []
    srv = socket.create_server((address, 0))
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                received.append((conn.recv(1024).decode(), peer[0]))
                conn.sendall(b"hello from the server")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], received
    finally:
        stop.set()
        thread.join()
        srv.close()


def test_everything_here_is_marked_cluster(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("cluster") is not None


def test_skip_or_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no root"):
        skip_or_fail("no root")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no root")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no root"):
        skip_or_fail("no root")


def test_three_hosts_with_own_names_and_addresses(test_network: TestNetwork) -> None:
    net = test_network
    assert [h.name for h in net] == ["node1", "node2", "node3"]
    assert net.subnet is not None and net.subnet.subnet_of(TEST_RANGE)
    addresses = {h.address for h in net} | {net.gateway}
    assert len(addresses) == 4
    assert net.gateway.endswith(".1") and [h.address.rsplit(".", 1)[1] for h in net] == ["11", "12", "13"]
    for h in net:
        assert len(h.veth) <= 15 and len(net.bridge) <= 15
        out = h.run(["hostname"], capture_output=True, text=True, check=True).stdout
        assert out.strip() == h.name
        listing = py(
            h, "import os, socket; print(socket.gethostname(), sorted(os.listdir('/sys/class/net')))"
        )
        assert listing.stdout.split(" ", 1) == [h.name, "['eth0', 'lo']\n"]


def test_own_pid_namespace_with_the_keeper_as_pid_1(test_network: TestNetwork) -> None:
    for h in test_network:
        out = py(
            h,
            """
            import os
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            init = open("/proc/1/cmdline", "rb").read().split(b"\\0")
            print(pids, os.getpid(), b"keeper" in init and h.encode() in init)
            """.replace("h.encode()", repr(h.name.encode())),
        ).stdout.split(" ")
        assert out[-1] == "True\n"  # pid 1 is this host's keeper
        pids = json.loads(" ".join(out[:-2]))
        assert pids[0] == 1 and int(out[-2]) in pids
        assert len(pids) <= 3  # the keeper, this python (and maybe its short-lived parent)
        # Seen from outside: only the keeper is left.
        assert [p.ns_pid for p in h.processes()] == [1]
        assert h.pids() == [h.keeper_pid]


def test_every_host_reaches_the_gateway(test_network: TestNetwork) -> None:
    net = test_network
    with tcp_server(net.gateway) as (port, received):
        for h in net:
            out = py(
                h,
                """
                import socket, sys
                with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
                    s.sendall(socket.gethostname().encode())
                    print(s.recv(1024).decode())
                """,
                net.gateway,
                str(port),
            ).stdout
            assert out == "hello from the server\n"
    assert sorted(received) == sorted((h.name, h.address) for h in net)


SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 7000))
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.sendall(("%s saw %s" % (socket.gethostname(), peer[0])).encode())
"""

CLIENT = """
import socket, sys
for address in sys.argv[1:]:
    with socket.create_connection((address, 7000), timeout=5) as s:
        print(s.recv(1024).decode())
"""


def test_hosts_reach_each_other_and_the_root_namespace_reaches_them(test_network: TestNetwork) -> None:
    net = test_network
    servers = [h.popen([PY, "-c", SERVER, h.address], stdout=subprocess.PIPE, text=True) for h in net]
    for s in servers:
        assert s.stdout is not None and s.stdout.readline() == "ready\n"
    for h in net:
        others = [o for o in net if o is not h]
        out = py(h, CLIENT, *(o.address for o in others)).stdout.splitlines()
        assert out == [f"{o.name} saw {h.address}" for o in others]
        # Names of the other hosts resolve inside a host (/etc/netns/<netns>/hosts).
        resolved = py(
            h, "import socket; print(socket.gethostbyname('node2'), socket.gethostbyname('gateway'))"
        )
        assert resolved.stdout.split() == [net["node2"].address, net.gateway]
    for h in net:  # from the root namespace, as the wulf server does
        with socket.create_connection((h.address, 7000), timeout=5) as conn:
            assert conn.recv(1024).decode() == f"{h.name} saw {net.gateway}"
    for s in servers:
        s.terminate()
        assert ended(s) == -signal.SIGTERM


def test_nothing_leaves_the_test_network(test_network: TestNetwork) -> None:
    net = test_network
    h = net[0]
    out = py(
        h,
        """
        import socket
        for address in ("192.0.2.1", "8.8.8.8"):
            try:
                socket.create_connection((address, 80), timeout=2).close()
                print("connected")
            except OSError as e:
                print(type(e).__name__, e.errno)
        """,
    ).stdout.splitlines()
    assert out == ["OSError 101"] * 2  # ENETUNREACH: no route besides the test /24
    route = h.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    assert "default" not in route and route.count("\n") == 1
    assert Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/forwarding").read_text() == "0\n"


def test_programs_in_one_host_see_each_other(test_network: TestNetwork) -> None:
    a, b = test_network[0], test_network[1]
    first = a.popen(["sleep", "60"])
    ns_pid = first.ns_pid()
    assert ns_pid is not None and ns_pid > 1
    code = """
        import os, sys
        pid = int(sys.argv[1])
        try:
            print(open("/proc/%d/cmdline" % pid, "rb").read().split(b"\\0")[0].decode())
        except OSError:
            print("-")
        """
    assert py(a, code, str(ns_pid)).stdout == "sleep\n"
    assert py(b, code, str(ns_pid)).stdout != "sleep\n"  # another host: other processes
    second = a.popen(["sleep", "60"])
    assert {p.argv[0] for p in a.processes() if p.ns_pid != 1} == {"sleep"}
    assert {first.ns_pid(), second.ns_pid()} <= {p.ns_pid for p in a.processes()}
    assert [p.ns_pid for p in b.processes()] == [1]
    a.kill_all()
    assert ended(first) == -signal.SIGKILL and ended(second) == -signal.SIGKILL


def test_terminate_and_kill_reach_the_program(test_network: TestNetwork) -> None:
    h = test_network[0]
    trap = h.popen(["sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo up; while :; do sleep 0.05; done"],
                   stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert trap.stdout is not None and trap.stdout.readline() == "up\n"
    trap.terminate()  # forwarded: the program handles it
    assert ended(trap, "trap") == 7
    assert trap.stdout.read() == "got TERM\n"

    for how, expected in (
        ("terminate", -signal.SIGTERM),
        ("kill", -signal.SIGKILL),
        ("kill entry", -signal.SIGKILL),
    ):
        sleeper = h.popen(["sleep", "60"])
        pid = sleeper.program_pid()
        assert pid is not None and not gone(pid)
        if how == "terminate":
            sleeper.terminate()
        elif how == "kill":
            sleeper.kill()
        else:  # the entry process dies: the program gets SIGKILL too (PR_SET_PDEATHSIG)
            os.kill(sleeper.pid, signal.SIGKILL)
        assert ended(sleeper, how) == expected, how
        assert wait_gone(pid), how
    assert wait_until(lambda: h.pids() == [h.keeper_pid])


def test_run_passes_io_status_cwd_and_env(test_network: TestNetwork, tmp_path: Path) -> None:
    h = test_network[1]
    r = h.run(["sh", "-c", 'read x; echo "got $x in $(pwd) with $FOO"; exit 3'],
              input="hi\n", capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "FOO": "bar"})  # fmt: skip
    assert (r.returncode, r.stdout) == (3, f"got hi in {tmp_path} with bar\n")
    assert h.run(["sh", "-c", "kill -TERM $$"]).returncode == -signal.SIGTERM
    with pytest.raises(subprocess.TimeoutExpired):
        h.run(["sleep", "60"], timeout=0.3)
    assert wait_until(lambda: h.pids() == [h.keeper_pid])
    with pytest.raises(FileNotFoundError):
        h.popen(["no-such-program-wulf"])


def test_stop_and_start_a_host(test_network: TestNetwork) -> None:
    h = test_network[2]
    sleeper = h.popen(["sleep", "60"])
    pid = sleeper.program_pid()
    old_keeper = h.keeper_pid
    h.stop()
    assert not h.running and sleeper.returncode == -signal.SIGTERM
    assert pid is not None and gone(pid) and gone(old_keeper)
    with pytest.raises(TestNetworkError, match="not running"):
        h.run(["true"])
    h.start()
    assert h.keeper_pid != old_keeper and h.pids() == [h.keeper_pid]
    assert h.run(["hostname"], capture_output=True, text=True).stdout == f"{h.name}\n"


def test_disconnect_and_reconnect(test_network: TestNetwork) -> None:
    net = test_network
    h = net[0]
    code = """
        import socket, sys
        try:
            socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()
            print("up")
        except OSError:
            print("down")
        """
    with tcp_server(net.gateway) as (port, _):
        assert py(h, code, net.gateway, str(port)).stdout == "up\n"
        h.disconnect()
        assert py(h, code, net.gateway, str(port)).stdout == "down\n"
        assert py(net[1], code, net.gateway, str(port)).stdout == "up\n"
        h.reconnect()
        assert wait_until(lambda: py(h, code, net.gateway, str(port)).stdout == "up\n")


@pytest.mark.parametrize("test_network", [1, ["alpha", "beta"]], indirect=True, ids=["one-host", "named"])
def test_network_sizes_and_names(test_network: TestNetwork) -> None:
    assert [h.name for h in test_network] in (["node1"], ["alpha", "beta"])
    for h in test_network:
        assert h.run(["hostname"], capture_output=True, text=True).stdout == f"{h.name}\n"


def test_two_networks_do_not_clash(make_test_network: Callable[..., TestNetwork]) -> None:
    one, two = make_test_network(2), make_test_network(2)
    assert one.subnet != two.subnet and one.bridge != two.bridge
    assert {h.netns for h in one}.isdisjoint(h.netns for h in two)


def test_teardown_leaves_nothing_behind(cluster_support: None) -> None:
    with TestNetwork(3) as net:
        programs = [h.popen(["sleep", "60"]) for h in net]
        inner = [p.program_pid() for p in programs]
        keepers = [h.keeper_pid for h in net]
        names = {"netns": sorted(h.netns for h in net), "links": sorted([net.bridge, *(h.veth for h in net)])}
        for kind, found in leftovers().items():
            assert set(names[kind]) <= set(found)
    for kind, found in leftovers().items():
        assert set(names[kind]).isdisjoint(found)
    for name in names["links"]:
        assert not Path("/sys/class/net", name).exists()
    for name in names["netns"]:
        assert not Path("/run/netns", name).exists() and not Path("/etc/netns", name).exists()
    assert all(p.returncode == -signal.SIGTERM for p in programs)
    assert all(pid is not None and gone(pid) for pid in [*inner, *keepers])


def test_teardown_after_a_failed_setup(cluster_support: None, monkeypatch: pytest.MonkeyPatch) -> None:
    net = TestNetwork(["good", "bad"])
    original = Host._spawn_keeper
    keepers: list[int] = []

    def spawn(self: Host) -> None:
        if self.name == "bad":
            raise RuntimeError("boom")
        original(self)
        assert self._keeper is not None
        keepers.append(self._keeper.pid)

    monkeypatch.setattr(Host, "_spawn_keeper", spawn)
    with pytest.raises(RuntimeError, match="boom"):
        net.start()
    assert net.bridge and not Path("/sys/class/net", net.bridge).exists()
    assert not any(Path("/run/netns", h.netns).exists() for h in net)
    assert len(keepers) == 1 and gone(keepers[0])


def test_leftovers_of_a_dead_run_are_cleaned_up(cluster_support: None) -> None:
    code = """
        import json, os, sys
        sys.path.insert(0, sys.argv[1])
        from hosts import TestNetwork
        net = TestNetwork(2)
        net.start()
        net[0].popen(["sleep", "60"])
        print(json.dumps({"netns": [h.netns for h in net], "links": [net.bridge] + [h.veth for h in net],
                          "keepers": [h.keeper_pid for h in net]}), flush=True)
        os._exit(0)  # dies without cleaning up
        """
    out = subprocess.run(
        [PY, "-c", textwrap.dedent(code), str(HERE)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    left = json.loads(out.stdout)
    # The keepers notice that their owner is gone and end their hosts.
    assert wait_until(lambda: all(gone(pid) for pid in left["keepers"]))
    found = leftovers()
    assert set(left["netns"]) <= set(found["netns"]) and set(left["links"]) <= set(found["links"])
    removed = cleanup_stale(DEFAULT_PREFIX)
    assert set(left["netns"] + left["links"]) <= set(removed)
    found = leftovers()
    assert set(left["netns"]).isdisjoint(found["netns"]) and set(left["links"]).isdisjoint(found["links"])
