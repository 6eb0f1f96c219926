#!/bin/bash
# Written for these tests after Grid Engine's qsub(1) manual: #$ lines count anywhere in the script,
# -hold_jid takes ids or names, and h_vmem is per slot
#$ -N late
echo "a command first"
#$ -hold_jid prep,12
#$ -pe smp 2 -l h_vmem=1.5G,h_rt=1:30:00
