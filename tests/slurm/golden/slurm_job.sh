#!/bin/bash
# airavata-magic Slurm job, rendered by airavata_magic.backends.scripts.render_job_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
#SBATCH --job-name="x'; touch /tmp/pwned #$(id) `id` \"q\" \\ 100%"
#SBATCH --output="/home/a b/.airavata-magic/runtimes/r-1/job.log"
#SBATCH --partition="gpu"
#SBATCH --account="x'; touch /tmp/pwned #$(id) `id` \"q\" \\ 100%"
#SBATCH --time="30"
#SBATCH --cpus-per-task="4"
#SBATCH --mem="8192M"
#SBATCH --gres="gpu:2"
#SBATCH --nodelist="n1"
# -- setup (profile) --
module load cuda/12
export X='a b'
# -- payload --
exec '/opt/py thon/bin/python' '/home/a b/launcher.py' '/home/a b/rd' --ip auto
