"""Kernel launch templates and the kernelspec template, shipped as ``airavata_magic.kernels``.

- ``slurm_job.sh``: the Slurm batch script that starts a kernel (and runs batch commands);
- ``ssh_kernel.sh``: the same for a plain SSH host;
- ``pod.yaml`` and ``pod_kernel.sh``: the Kubernetes pod and the shell loop it runs;
- ``remote_launcher.py``: the kernel launcher those scripts run next to the kernel;
- ``kernel.json``: the kernelspec ``airavata-magic kernelspec install`` writes.
"""
