#PBS -m e
#PBS -P n74
#PBS -q normal 
#PBS -l walltime=12:00:00
#PBS -l ncpus=96
#PBS -l mem=32GB
#PBS -l wd
#PBS -N job
#PBS -l jobfs=1GB
#PBS -l storage=scratch/y57+scratch/n74
# Source: github.com/jieunbyun/BNS-JT, run_batch_dask.sh (no #! line; directives kept; command replaced)

echo "./batch_dask.sh" > batch_dask.$PBS_JOBID.log
