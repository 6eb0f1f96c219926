"""psij-python's Slurm or PBS executor on wulf, run by tests/integration/test_psij.py with the tool venv's python
and wulf's commands on the PATH: three jobs submitted through sbatch (qsub) and followed through squeue (qstat):
one that succeeds, one that fails with exit code 3, one cancelled through scancel (qdel) while it runs.
Prints one JSON line: each job's native id, final state, exit code and the status message psij gives."""

import json
import sys
from datetime import timedelta
from pathlib import Path

from psij import Job, JobExecutor, JobSpec, JobState
from psij.executors.batch.pbs_base import PBSExecutorConfig
from psij.executors.batch.slurm import SlurmExecutorConfig

KIND, WORK = sys.argv[1], Path(sys.argv[2])
CONFIGS = {"slurm": SlurmExecutorConfig, "pbs": PBSExecutorConfig}


def spec(name: str, command: str) -> JobSpec:
    return JobSpec(executable="/bin/sh", arguments=["-c", command], directory=WORK, name=name,
                   stdout_path=WORK / f"{name}.out", stderr_path=WORK / f"{name}.err")


def main() -> None:
    config = CONFIGS[KIND](work_directory=WORK / "psij-work", queue_polling_interval=1,
                                 initial_queue_polling_delay=1, keep_files=True)
    ex = JobExecutor.get_instance(KIND, config=config)
    ok = Job(spec("ok", 'echo "hello from ${SLURM_JOB_ID:-$PBS_JOBID} on $(cat \"$PSIJ_NODEFILE\")"'))
    bad = Job(spec("bad", "exit 3"))
    long = Job(spec("long", "sleep 120"))
    for job in (ok, bad, long):
        ex.submit(job)
    long.wait(target_states=[JobState.ACTIVE], timeout=timedelta(seconds=120))
    long.cancel()
    out = {}
    for name, job in (("ok", ok), ("bad", bad), ("long", long)):
        status = job.wait(timeout=timedelta(seconds=120))
        out[name] = {"id": job.native_id, "state": str(status.state) if status else None,
                     "exit_code": status.exit_code if status else None,
                     "message": status.message if status else None}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
