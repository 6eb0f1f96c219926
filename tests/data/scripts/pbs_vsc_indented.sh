#!/bin/bash
# Source: github.com/hpcugent/vsc_user_docs, intro-HPC/examples/example.sh (directives and comments kept)


  # "name" of the job (optional)
#PBS -N my_serial_job         


  # requested running time (required!)
#PBS -l walltime=01:00:00

  # specification (required!)
  #   nodes=   number of nodes; 1 for serial; 1 or more for parallel
  #   ppn=     number of processors per node; 1 for serial; up to 8
#PBS -l nodes=1:ppn=1

  # if you want to be sure to get your private node, simply claim all memory ;-)
#  #PBS -l pvmem=16000m


  # send mail notification (optional); may be combined, e.g., -m abe
#PBS -m e

# #PBS -M my.other.address@mail.com


  # redirect standard output (-o) and error (-e) (optional)
#PBS -o stdout
#PBS -e stderr


  # go to the (current) working directory
cd $PBS_O_WORKDIR  


  # the program itself
echo Start Job
date
hostname
echo End Job
