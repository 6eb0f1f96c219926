#!/bin/env sh
# Source: github.com/eijynagai/scripts_nagai, run_qsub.sh (directives kept, the <...> placeholders dropped)
#$ -S /bin/sh
#$ -cwd                       #job is located in the current wd
#$ -jy                        #merges the contents of standard error with ouput
##$ -hold_jid <job_id>        #holds the jov until job_id ends
#$ -R y                       #reserve resources until have enough to start
#$ -v LD_LIBRARY_PATH="",PATH=$PATH      #export these environmental variables 

## modify below
#$ -l os7                     #run only os7
#$ -l s_vmem=8G               #virtual memory required
#$ -l mem_req=8G              #expected memory required; put same as s_vem

echo "Hello world"
