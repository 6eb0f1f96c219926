#!/bin/bash 
# Source: github.com/andim/optimmune, figS2_S3/arrayjob.sh (directives kept; commands replaced)

# set nice descriptive name 
#$ -N optim_S2S3
# use current working directory 
#$ -cwd 
# load current environment variables to context of the job
#$ -V 
# combine error and normal output into a single file 
#$ -j y 
# output in specified dir 
#$ -e logs 
#$ -o logs 
# declare the job to be not rerunable 
#$ -r n 
# run as an array job 
#$ -t 1-90

echo $SGE_TASK_ID $HOSTNAME 
