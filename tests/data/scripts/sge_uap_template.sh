#!/bin/bash
# Source: github.com/kmpf/uap, submit-scripts/qsub-template.sh (a template: uap fills in #{...}; here as a
# user would fill it in, with its trailing comments kept)

#$ -pe smp 4                  # request the "smp" parallel environment and up to #{CORES} slots
#$ -cwd                       # Execute the job from the current working directory.
##$ -V                         # Specifies that all environment variables be exported
#$ -S /bin/bash               # shell to be used
#$ -m as                      # e-mail notification on aborting and suspending jobs
#$ -M someone@example.org     # e-mail notification address
#$ -l h_rt=96:00:00           # runtime of your job
#$ -l h_vmem=8G               # memory per core for your job
#$ -l m_core=4                # use only nodes where all 4 cores are available

## Execute command

echo "the command"
