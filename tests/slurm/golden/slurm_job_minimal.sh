#!/bin/bash
# airavata-magic Slurm job, rendered by airavata_magic.backends.scripts.render_job_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
#SBATCH --job-name="plain"
#SBATCH --output="/w/job.log"
# (no resource options)
# -- setup (profile) --
:
# -- payload --
exec python3 /w/l.py /w
