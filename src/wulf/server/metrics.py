"""``GET /metrics``: what the server knows, in Prometheus' text format.

Two kinds of figures. What is counted as it happens (submissions, starts, ends by state, HTTP requests
by route and status, the scheduling pass and commit durations) lives in a :class:`Metrics` the daemon and
the app add to. What is a state (jobs by state and queue, each user's running and waiting jobs, each
node's cpus, memory, load and outside load, agent connections) is read from the server's state when
scraped (:class:`_StateCollector`), so it costs nothing between scrapes. The registry is the daemon's
own, not the library's global one (a test may run several daemons in one process).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wulf.model.job import ACTIVE_STATES, JobState, Origin

if TYPE_CHECKING:
    from wulf.server.state import ServerState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds: a scheduling pass on a large cluster takes some milliseconds; a commit, fsyncs
PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    def __init__(self, state: ServerState) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.submitted = Counter("wulf_jobs_submitted", "Jobs queued (qr, the API) or started at once (jr)",
                                 registry=r)
        self.started = Counter("wulf_jobs_started", "Jobs sent to their nodes to start", registry=r)
        self.ended = Counter("wulf_jobs_ended", "Jobs that ended, by how", ["state"], registry=r)
        self.requests = Counter("wulf_http_requests", "HTTP requests, by route and status", ["route", "status"],
                                registry=r)
        self.passes = Histogram("wulf_schedule_pass_seconds", "Time a scheduling pass took (the policy and its "
                                "bookkeeping, not the commit)", buckets=PASS_BUCKETS, registry=r)
        self.commits = Histogram("wulf_commit_seconds", "Time from handing jobs to the store to their commit",
                                 buckets=COMMIT_BUCKETS, registry=r)
        r.register(_StateCollector(state))

    def ended_one(self, state: JobState, origin: Origin) -> None:
        if origin is not Origin.EXTERNAL:
            self.ended.labels(str(state)).inc()

    def commit_timer(self) -> Any:
        """A callback for a commit's future: observes the time from now to its end."""
        t0 = time.perf_counter()
        return lambda _fut: self.commits.observe(time.perf_counter() - t0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges read off the state machine at each scrape."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        st = self.state
        by_queue: Tally[tuple[str, str]] = Tally()
        per_user: Tally[tuple[str, str]] = Tally()
        for job in st.jobs.values():
            if job.state not in ACTIVE_STATES or job.origin is Origin.EXTERNAL:
                continue
            by_queue[(str(job.state), job.queue)] += 1
            per_user[(job.user, "running" if job.state is JobState.RUNNING else "waiting")] += 1
        jobs = GaugeMetricFamily("wulf_jobs", "Jobs queued, held and running, by queue name", labels=["state", "queue"])
        for (state, queue), n in sorted(by_queue.items()):
            jobs.add_metric([state, queue], n)
        yield jobs
        users = GaugeMetricFamily("wulf_user_jobs", "Each user's running and waiting jobs", labels=["user", "state"])
        for (user, state), n in sorted(per_user.items()):
            users.add_metric([user, state], n)
        yield users
        yield from self._nodes()

    def _nodes(self) -> Iterator[Metric]:
        families = {
            "up": GaugeMetricFamily("wulf_node_up", "1 if the node's agent is connected", labels=["node"]),
            "drained": GaugeMetricFamily("wulf_node_drained", "1 if the node takes no new jobs", labels=["node"]),
            "cpus": GaugeMetricFamily("wulf_node_cpus", "Cpus the node offers", labels=["node"]),
            "cpu_used": GaugeMetricFamily("wulf_node_cpu_used", "Cpus in use on the node, by everything",
                                          labels=["node"]),
            "cpu_outside": GaugeMetricFamily("wulf_node_cpu_outside", "Cpus used by work wulf did not start",
                                             labels=["node"]),
            "cpu_free": GaugeMetricFamily("wulf_node_cpu_free", "Cpus placement sees free", labels=["node"]),
            "mem_total": GaugeMetricFamily("wulf_node_memory_mb", "Memory the node offers (MB)", labels=["node"]),
            "mem_free": GaugeMetricFamily("wulf_node_memory_free_mb", "Memory placement sees free (MB)",
                                          labels=["node"]),
            "load1": GaugeMetricFamily("wulf_node_load1", "The node's one-minute load average", labels=["node"]),
            "jobs": GaugeMetricFamily("wulf_node_jobs", "Jobs wulf runs on the node", labels=["node"]),
        }
        connected = 0
        for name in sorted(self.state.nodes):
            node = self.state.nodes[name]
            d = node.public(view=self.state.view(node))
            connected += node.link is not None
            outside = sum(j.cpu_used for j in node.jobs.values() if j.origin is Origin.EXTERNAL)
            values = {"up": float(d["state"] != "down"), "drained": float(bool(d["drained"])), "cpus": d["cpus"],
                      "cpu_used": d["cpu_used"], "cpu_outside": outside, "cpu_free": d["cpu_free"],
                      "mem_total": d["mem_total_mb"], "mem_free": d["mem_free_mb"], "load1": d["load"],
                      "jobs": sum(j.origin is not Origin.EXTERNAL for j in node.jobs.values())}
            for key, family in families.items():
                if values[key] is not None:
                    family.add_metric([name], float(values[key]))
        yield from families.values()
        agents = GaugeMetricFamily("wulf_agent_connections", "Agents connected now")
        agents.add_metric([], connected)
        yield agents


class CountRequests:
    """ASGI middleware (outermost): every HTTP request, by its route's template (not its path: the
    number of series stays bounded) and the status answered, refusals at the door included."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(none)"
            self.metrics.requests.labels(template, str(status or 500)).inc()
