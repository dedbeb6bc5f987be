#!/bin/sh
# airavata-magic kernel on a plain SSH host, rendered by airavata_magic.backends.scripts.render_ssh_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
# -- setup (profile) --
${setup}
# -- payload --
${command}
