#!/bin/bash                                                                                                             
# Source: github.com/BigelowLab/charlie, Examples/multiple_jobs.sh (directives kept; commands replaced)

## set name of PBS job                                                                                                  
#PBS -N job_array_example                                                                                         

## set the job array variable                                                                                           
## creates 10 jobs running the same script                                                                              
#PBS -J 1-10                                                                                                            

## send the environment variables with job                                                                              
#PBS -V                                                                                                                 

## set the queue                                                                                                        
#PBS -q route                                                                                                           

## give job 10 minutes                                                                                                  
#PBS -l walltime=00:10:00                                                                                               

## use one compute node and one cpu (this will default to use 2gb of memory)                                            
#PBS -l select=1:ncpus=1                                                                                                

## output files placed in output directory in the user's home directory
#PBS -e /home/vcc/output
#PBS -o /home/vcc/output

echo "index $PBS_ARRAY_INDEX"
