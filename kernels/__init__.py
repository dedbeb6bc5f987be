"""Job scripts, pod manifests and kernelspecs, shipped as ``airavata_magic.kernels``."""
