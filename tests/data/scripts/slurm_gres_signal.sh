#!/bin/bash
# Source: github.com/Matteo294/QuarkMesonModel, code/runbw.sh (directives kept; commands replaced)
#SBATCH --ntasks=1
#SBATCH --time=0:20:00
#SBATCH --mem=1000mb
#SBATCH -J test
#SBATCH --partition=dev_gpu_4		# dev_gpu4, gpu_4, or gpu_8
#SBATCH --gres=gpu:1
#SBATCH --signal=B:USR2@60		# send SIGNAL to the code to wrap up 60 seconds before killing it

echo "./out input.toml"
