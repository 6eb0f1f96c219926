#!/bin/bash
# Source: github.com/easybuilders/easybuild-easyconfigs, easybuild/easyconfigs/r/RELION/qsub_torque_cpu.bash
# (a template: RELION fills in the XXX...XXX fields; submitted as it is, its values are not numbers)
#PBS -V
#PBS -N XXXnameXXX
#PBS -l nodes=XXXmpinodesXXX:ppn=XXXthreadsXXX
#PBS -l walltime=XXXextra1XXX:00:00
#PBS -q XXXqueueXXX
#PBS -e XXXerrfileXXX
#PBS -o XXXoutfileXXX

cd $PBS_O_WORKDIR

echo "mpirun -n XXXmpinodesXXX XXXcommandXXX"
