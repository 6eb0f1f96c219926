"""A storm of reconnections (issue 16 §2): the server restarted under many agents (fake ones, speaking the
real protocol from one process: bench/fakeagents.py) takes them all back, none timed out on the way and
none refused, and its log stays clean. (How long it takes is the bench's to report, not this test's.)

At 5,000 nodes a server took its agents' handshakes all at once, and hundreds timed out (the agent's
10 s for the WebSocket's opening handshake); now they wait their turn after being accepted
(wulf.server.admission). At this test's scale the storm did not time out before either: it guards the
admission (every agent back, no timeout, no refusal), it does not reproduce the 5,000 nodes."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODES = 1000


def test_every_agent_comes_back_after_a_restart_of_the_server_without_a_timeout() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import fakeagents
    finally:
        sys.path.remove(str(ROOT))
    r = fakeagents.run(nodes=NODES, clusters=65, interval=5.0, jobs=0, seconds=1.0, listings=False, restart=True)
    assert r["up"] == NODES and not r["connect_agent_failures"]
    assert r["restart_up"] == NODES
    failures = {**r["restart_agent_failures_while_away"], **r["restart_agent_failures"]}
    # what a restart does to a connection: it is closed (1012, "going away"; without a close frame if the
    # server's 2 s to close them all ran out), then refused while the server is away (no socket, or
    # nobody listening); never a timeout, nor a refusal of a hello
    restart = {"closed 1012", "closed (no frame)", "ConnectionRefusedError", "FileNotFoundError"}
    assert set(failures) <= restart, failures
    assert r["restart_log_hello_timeouts"] == 0 and r["restart_log_errors"] == 0
    assert r["server_log_tracebacks"] == 0
