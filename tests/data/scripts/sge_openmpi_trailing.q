#!/bin/sh
# Source: github.com/boywert/SussexBigRun2013, SimpleTree/parallel.q (directives kept; commands replaced)
#$ -N boyd
#$ -M someone@example.org
#$ -m bea
#$ -j y
#$ -cwd
#$ -pe openmpi 343 #eg12-36
#$ -q mps_amd.q
#$ -S /bin/bash
# source modules environment:
echo "mpirun -np $NSLOTS $1"
