#!/bin/bash -l
# Source: github.com/sami-b95/random_circuits, array_jobs_submit.sh (directives kept; command replaced)

# Batch script to run a serial array job under SGE.

# Request ten minutes of wallclock time (format hours:minutes:seconds).
#$ -l h_rt=0:20:0

# Request 1 gigabyte of RAM (must be an integer followed by M, G, or T)
#$ -l mem=2G

# Set up the job array.  In this instance we have requested 10000 tasks
# numbered 1 to 10000.
#$ -t 1-4

# Set the name of the job.
#$ -N MyArrayJob

# Set the working directory to somewhere in your scratch space. 
#$ -wd /home/ucapsjg/workdir

# Run the application.

echo "$JOB_NAME ($SGE_TASK_ID - 1)"
