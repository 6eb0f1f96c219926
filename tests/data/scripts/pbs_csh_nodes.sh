#!/bin/csh
# Source: github.com/icesw/biom262-hw1, tf_binding.sh (a template with <...> fields; directives kept, the
# fields filled in as a user would, commands replaced)
#PBS -q hotel
#PBS -N tf_binding
#PBS -l nodes=10:ppn=2
#PBS -l walltime=0:50:00
#PBS -o tf_binding.out
#PBS -e tf_binding.err
#PBS -V
#PBS -M someone@example.org
#PBS -m abe
#PBS -A account
echo "mpirun -v -machinefile $PBS_NODEFILE -np 20 ./mpi.out"
