"""Sessions, templates, replay and the kernel provisioner."""
