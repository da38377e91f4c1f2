"""pyrunc: an OCI runtime-spec container runtime with runc's command line."""

__version__ = "0.1.0"
#: The runtime-spec version pyrunc implements (reported by --version, state and spec).
OCI_VERSION = "1.2.0"
