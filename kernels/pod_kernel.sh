# The kernel pod's container command: `/bin/sh -c "$(this file)" PYTHON CONNECTION_FILE`.
# Rendered into the pod by airavata_magic.backends.kubernetes.manifests.render_pod; the comment
# lines (whole lines starting with '#') are dropped there, the rest goes in as it is.
#
# A kernel that shuts down cleanly (exit 0: %restart_runtime, or `exit()` in a cell) is started
# again at once in the same pod; any other exit ends the container, so the kubelet reports it
# (restart count, exit code, OOMKilled) and a kernel that cannot start becomes CrashLoopBackOff.
# SIGTERM from a pod deletion is passed on to the kernel (PID 1 would ignore it otherwise).
# SIGINT is caught and ignored: ipykernel 6 interrupts a cell by signalling its whole process
# group, shell included (7 signals only itself unless it leads the group), and an interrupt must
# not end the shell; the inner loop waits again while the kernel lives.
trap 'stop=1; kill -TERM "$pid" 2>/dev/null' TERM
trap : INT
while :; do
  "$0" -m ipykernel_launcher -f "$1" & pid=$!
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
  if [ -n "${stop:-}" ] || [ "$code" -ne 0 ]; then exit "$code"; fi
done
