#!/bin/bash
# Source: github.com/JuanCruzCB/Sistemas-Paralelos, TPs/3/Entrega/script-mpi.sh (directives kept; command replaced)
#SBATCH -N 1
#SBATCH --exclusive
#SBATCH --tasks-per-node=8
#SBATCH -o mpi/output_N_?.txt
#SBATCH -e mpi/errors_N_?.txt
echo "mpirun mpi $1"
