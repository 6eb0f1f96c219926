#!/bin/bash
# Source: github.com/alex-wenzel/expanse-su-estimator, test_examples/expanse_basic_openmp_job.sh
# (directives kept, the account placeholder among them; its commands replaced)
#SBATCH --job-name="hello_openmp"
#SBATCH --output="hello_openmp.%j.%N.out"
#SBATCH --partition=compute
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=24
#SBATCH --mem=248G
#SBATCH --account=<<project*>>
#SBATCH --export=ALL
#SBATCH -t 01:30:00
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
echo "threads $OMP_NUM_THREADS"
