"""`pyrunc features`: runc's JSON layout, listing only what pyrunc really does on this host.

runc reports AppArmor and SELinux as enabled where the host has neither, and accepts the bogus
capability CAP_TEST; here every entry is derived from the same tables the code uses, so the
list cannot claim more than the implementation.
"""

from __future__ import annotations

from pyrunc import __version__, capabilities, exeguard, hooks, lsm, mounts


def mount_options() -> list[str]:
    names = set(mounts._ATTRS) | {"r" + name for name in mounts._ATTRS}
    names |= mounts._SB_FLAGS | mounts._IGNORED | set(mounts._PROPAGATION)
    names |= {"bind", "rbind", "tmpcopyup"} | mounts._IDMAP
    return sorted(names)


def seccomp_features() -> dict:
    try:
        from pyrunc import seccomp
    except ImportError:
        return {"enabled": False}
    describe = getattr(seccomp, "features", None)
    return describe() if describe else {"enabled": False}


def features() -> dict:
    try:
        from pyrunc._build import COMMIT
    except ImportError:
        COMMIT = "unknown"
    top = capabilities.last_cap()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": list(hooks.KINDS),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": [f"CAP_{name}" for name in capabilities.CAPS[: top + 1]],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": seccomp_features(),
            # Applied where the host runs them, refused where it does not (lsm.py).
            "apparmor": {"enabled": lsm.apparmor_enabled()},
            "selinux": {"enabled": lsm.selinux_enabled()},
            "intelRdt": {"enabled": False},
            # idmapped binds: open_tree + mount_setattr(MOUNT_ATTR_IDMAP), root only (runc's rule)
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
        },
        "annotations": {
            "org.opencontainers.pyrunc.version": __version__,
            "org.opencontainers.pyrunc.commit": COMMIT,
            "org.opencontainers.pyrunc.checkpoint.enabled": "false",
            # The machine the exec trampoline is built for (exeguard.py), or "none": then the
            # program is exec'd by our Python itself, a #!/proc/self/exe hole (README Security).
            "org.opencontainers.pyrunc.exec-trampoline": exeguard.features(),
        },
    }
