#!/bin/bash -x
# Source: github.com/easybuilders/JSC, Golden_Repo/2018b/r/RELION/relion_ssub.sh (a template: RELION fills in
# the XXX...XXX fields; submitted as it is, its values are not numbers)
#SBATCH --ntasks=XXXmpinodesXXX
#SBATCH --ntasks-per-node=XXXextra2XXX
#SBATCH --cpus-per-task=XXXthreadsXXX
#SBATCH --time=XXXextra1XXX:00:00
#SBATCH --partition=XXXqueueXXX

export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK}
echo "srun XXXcommandXXX"
