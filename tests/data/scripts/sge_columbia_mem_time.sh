
#!/bin/bash
# Source: github.com/nyspisoccog/ks_scripts, python_scripts/pimriscripts/mastersort/scripts_dir/q7498_run1M5.sh
# (directives kept; the command replaced). Its #! line is its second: Grid Engine reads it as a comment.
#$ -S /bin/bash
#$ -l mem=4G,time=24:00:00
#$ -cwd
#$ -N j7498_run1M5
#$ -j y
#$ -o 7498_run1M5.txt
echo "Current job ID : $JOB_ID"
echo "Current job name : $JOB_NAME"
