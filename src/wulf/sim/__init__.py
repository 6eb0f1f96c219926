"""``wulf sim``: the real policy (wulf.policy) on a virtual clock, against synthetic clusters and workloads.

- :mod:`wulf.sim.workload`: nodes, jobs and outside load; the generator and the workload file format.
- :mod:`wulf.sim.engine`: the discrete-event loop that feeds the policy as the server does.
- :mod:`wulf.sim.metrics`: what a run measures (makespan, utilisation, waits, fairness, pass times).
- :mod:`wulf.sim.report`, :mod:`wulf.sim.plot`: a table for people, JSON for machines, a plot.
"""
