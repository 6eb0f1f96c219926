#!/bin/bash                                                                     
# Source: github.com/BigelowLab/charlie, Examples/basic_submission.sh (directives kept, the output directory
# made a place the tests can fill in: OUTDIR)

## set name of script                                                           
#PBS -N script_name                                                             

## send the environment variables with job 
#PBS -V

## set the queue                                                                          
#PBS -q route                                                                   

## give job 10 minutes                        
#PBS -l walltime=00:10:00 

## use one compute node and one cpu
#PBS -l select=1:ncpus=1                                                        
                                                              
#PBS -e OUTDIR                                                           
#PBS -o OUTDIR                                                          


## jobs to submit                                                               
echo start
echo finished
