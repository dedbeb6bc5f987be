#!/bin/bash
# airavata-magic fan-out array, rendered by airavata_magic.fanout.slurm.render_array_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
#SBATCH --job-name="fanout-fo-1 'x'"
#SBATCH --output="/w/fanout/fo 1%%/logs/%A_%a.log"
#SBATCH --partition="debug"
#SBATCH --time="10"
# -- setup (profile) --
module load x
# -- one task: line SLURM_ARRAY_TASK_ID+1 of the list file given as $1 is TASK<TAB>INPUT --
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")
task=${line%%$'\t'*}
input=${line#*$'\t'}
out='/w/fanout/fo 1/$(out)'/$(printf '%05d' "$task")
mkdir -p -- "$out" && rm -f -- "$out/exit"
'/opt/py thon/bin/python' '/w/alg/a;rm -rf ~.py' "$input" "$out" > "$out/stdout.log" 2> "$out/stderr.log"
rc=$?
echo "$rc" > "$out/exit"
exit "$rc"
