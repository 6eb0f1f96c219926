"""Dask-jobqueue on wulf, run by tests/integration/test_dask_jobqueue.py with the tool venv's python and
wulf's Slurm or PBS commands on the PATH: a cluster of KIND (slurm, pbs) scaled to two workers, each a wulf
job, computes a sum of squares; then the workers are scaled away (their jobs cancelled) and it closes.
Prints one JSON line: the answer, the worker jobs' ids (as the submit command printed them) and what each
worker saw as its job id in its environment."""

import json
import os
import sys
import time

from dask.distributed import Client
from dask_jobqueue import PBSCluster, SLURMCluster

KIND, LOGS = sys.argv[1], sys.argv[2]
CLUSTERS = {"slurm": SLURMCluster, "pbs": PBSCluster}


def job_id_seen() -> str:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or ""


def main() -> None:
    cluster = CLUSTERS[KIND](cores=1, processes=1, memory="512MB", walltime="00:10:00", log_directory=LOGS,
                             scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
                             death_timeout=60)
    print(cluster.job_script(), file=sys.stderr, flush=True)
    with cluster, Client(cluster) as client:
        cluster.scale(2)
        client.wait_for_workers(2, timeout=240)
        jobs = sorted(str(w.job_id) for w in cluster.workers.values())
        total = client.submit(sum, client.map(lambda x: x * x, range(1, 101))).result(timeout=120)
        seen = sorted(client.run(job_id_seen).values())
        cluster.scale(0)  # each worker's job is cancelled (scancel / qdel)
        deadline = time.monotonic() + 120
        while cluster.workers and time.monotonic() < deadline:
            time.sleep(0.2)
        left = len(cluster.workers)
    print(json.dumps({"total": total, "jobs": jobs, "seen": seen, "left": left}), flush=True)


if __name__ == "__main__":
    main()
