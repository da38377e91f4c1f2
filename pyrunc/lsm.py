"""process.apparmorProfile, process.selinuxLabel and linux.mountLabel (and exec's --apparmor,
--process-label): applied where the host runs the LSM, refused where it does not.

runc 1.1.5 on a host without either LSM (measured by hand on this one): an apparmorProfile
fails in the init ("unable to apply apparmor profile: ... write /proc/self/attr/exec: invalid
argument"), a selinuxLabel is refused up front ("selinux label is specified in config, but
selinux is disabled or not supported"), and a mountLabel makes its first labelled mount fail
(EINVAL on `context=`). The two process labels confine the program: running without the
confinement asked for would be silent weakening, so pyrunc refuses them up front, naming the
field, before anything is created. A mountLabel confines nothing by itself (it is the SELinux
context given to the container's mounts, and without SELinux no file has a context): here pyrunc
follows crun rather than runc, warns, and runs, which is what runtime-tools' linux_mount_label
expects. An empty string asks for nothing, as with runc.
"""

from __future__ import annotations

from pyrunc import errors  # its classes are made on first use: errors.X at the raise sites
from pyrunc import lightos as os  # os minus its import cost: see lightos.py


def apparmor_enabled() -> bool:
    """runc's test: apparmorfs present and the module's `enabled` parameter "Y"."""
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read(1) == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    """selinuxfs mounted where libselinux looks for it."""
    return os.path.exists("/sys/fs/selinux/enforce")


def check(proc: dict, linux_cfg: dict | None, where: str = "config.json: /process") -> None:
    """Refuse a label this host cannot apply (see the module docstring)."""
    if proc.get("apparmorProfile") and not apparmor_enabled():
        raise errors.ConfigError(f"{where}/apparmorProfile: {proc['apparmorProfile']!r} asked "
                                 "for, but AppArmor is not enabled on this host")
    if proc.get("selinuxLabel") and not selinux_enabled():
        raise errors.ConfigError(f"{where}/selinuxLabel: {proc['selinuxLabel']!r} asked for, "
                                 "but SELinux is disabled or not supported on this host")
    if linux_cfg and linux_cfg.get("mountLabel"):
        if not selinux_enabled():
            from pyrunc.log import Log
            Log.warning(f"config.json: /linux/mountLabel: {linux_cfg['mountLabel']!r} ignored: "
                        "SELinux is disabled or not supported on this host")
            return
        raise errors.NotSupported("config.json: /linux/mountLabel: labelled mounts are not "
                                  "supported yet")


def apply(proc: dict, write_proc) -> None:
    """Label the next execve: the kernel applies it at exec, so this runs right before the
    seccomp filter (which could deny the write). write_proc writes through the trusted procfs
    handle, never through the container's /proc."""
    profile = proc.get("apparmorProfile")
    if profile:
        try:
            write_proc("/proc/self/attr/apparmor/exec", f"exec {profile}")
        except FileNotFoundError:  # kernels before 5.8 have only the shared attr file
            write_proc("/proc/self/attr/exec", f"exec {profile}")
    label = proc.get("selinuxLabel")
    if label:
        write_proc("/proc/self/attr/exec", label)
