#!/bin/bash
# Source: github.com/samkos/breakit, job.sh (directives kept; its commands replaced)

#SBATCH --job-name=arrayJob
#SBATCH --output=arrayJob_%A_%a.out
#SBATCH --error=arrayJob_%A_%a.err
#SBATCH --time=00:01:00
#SBATCH --ntasks=1


######################
# Begin work section #
######################

echo "My SLURM_ARRAY_TASK_ID: " $SLURM_ARRAY_TASK_ID
