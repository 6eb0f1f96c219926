#!/bin/bash
# Written for these tests after Slurm's sbatch(1) manual: Slurm directives with wulf's own (#WULF wins),
# --export with a value, a quoted name, and a directive after the first command (which sbatch ignores)
#SBATCH --job-name="two words"
#SBATCH --export=ALL,STAGE=prep
#SBATCH --time=2-12
#SBATCH --mem=2G
#SBATCH --nice=5
#SBATCH --constraint="bigmem&ssd"
#WULF --mem 1G --name mixed
#SBATCH -c 2
hostname
#SBATCH -c 64
