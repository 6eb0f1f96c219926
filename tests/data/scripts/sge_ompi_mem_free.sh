#!/bin/bash
# Source: github.com/sdaxen/bmi206_final_project, nup84_replicate2/scripts/nup84.isd.modeling681_batchsubmit.sh
# (directives kept; commands replaced)
#$ -S /bin/bash
#$ -l arch=linux-x64    # Specify architecture, required
#$ -l mem_free=6G       # Memory usage, required.  Note that this is per slot
#$ -l h_rt=48:0:0
#$ -pe ompi 6           # Specify parallel environment and number of slots, required
#$ -R yes               # SGE host reservation, highly recommended
#$ -V                   # Pass current environment to exec node, required
#$ -cwd                 # Current working directory
#$ -m bea
#$ -M someone@example.org

echo "mpirun -np $NSLOTS python nup84.isd.modeling681.py"
