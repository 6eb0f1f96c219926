#PBS -q workq
#PBS -S /bin/bash 
#PBS -l select=4:ncpus=6:mpiprocs=1:ompthreads=6
#PBS -l walltime=24:00:00 
#PBS -V
# Source: github.com/cyber-hydrology/h12, 0job_kit_h12.sh (no #! line; directives kept; commands replaced)

NCORE=`cat $PBS_NODEFILE | wc -l`

cd $PBS_O_WORKDIR

echo "mpirun -machinefile $PBS_NODEFILE ./run"
