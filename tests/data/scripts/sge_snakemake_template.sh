#!/bin/bash
# Source: github.com/chrishah/AMEB_HPC_Snakemake, data/submission.template.sge.sh (directives kept)
#
#$ -N test	   	# Job name
#$ -S /bin/bash         # Set shell to bash
#
#$ -l h_vmem=2G         # Request Max. Virt. Mem. (this is per core, see -pe option below)
#
#$ -q all.q		# choose the queue
#$ -cwd                 # Change to current working directory
#$ -V                   # Export environment variables into script
#$ -pe smp 1    	# Select the parallel environment and specify the number of cores you want to reserve
#
#$ -o log.$JOB_NAME.$JOB_ID.out      # SGE-Output File
#$ -e log.$JOB_NAME.$JOB_ID.err      # SGE-Error File

#print some info to log
echo "Running under shell '${SHELL}' in directory '`pwd`' using $NSLOTS slots"
echo "Host: $HOSTNAME"
echo "Job: $JOB_ID"
