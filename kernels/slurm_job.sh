#!/bin/bash
# airavata-magic Slurm job, rendered by airavata_magic.backends.scripts.render_job_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
#SBATCH --job-name=${job_name}
#SBATCH --output=${output}
${directives}
# -- setup (profile) --
${setup}
# -- payload --
${command}
