"""End-to-end tests through podman, containerd and docker (marker `engines`)."""
