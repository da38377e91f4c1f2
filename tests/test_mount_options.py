"""Mount options: parsing (pure) and runc's tmpcopyup extension (kernel)."""

from __future__ import annotations

import pytest

from pyrunc import linux as L
from pyrunc.errors import ConfigError, NotSupported
from pyrunc.mounts import parse_mount


def test_flags_attributes_and_data_are_sorted_out():
    plan = parse_mount({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                        "options": ["ro", "nosuid", "nodev", "noexec", "strictatime", "size=1m",
                                    "mode=755", "rprivate", "sync"]}, 0, "/b")
    assert plan.attr_set & L.MOUNT_ATTR_RDONLY and plan.attr_set & L.MOUNT_ATTR_NOSUID
    assert plan.attr_set & L.MOUNT_ATTR_NODEV and plan.attr_set & L.MOUNT_ATTR_NOEXEC
    assert plan.attr_set & L.MOUNT_ATTR__ATIME == L.MOUNT_ATTR_STRICTATIME
    assert plan.data == [("size", "1m"), ("mode", "755")]
    assert plan.propagation == [(L.MS_PRIVATE, True)]
    assert plan.sb_flags == ["sync"]


def test_later_option_wins_and_recursive_attributes_are_separate():
    plan = parse_mount({"destination": "/x", "type": "bind", "source": "/tmp",
                        "options": ["rbind", "ro", "rw", "rnosuid"]}, 0, "/b")
    assert plan.bind and plan.recursive
    assert not plan.attr_set & L.MOUNT_ATTR_RDONLY and plan.attr_clr & L.MOUNT_ATTR_RDONLY
    assert plan.rec_attr_set & L.MOUNT_ATTR_NOSUID


def test_relative_bind_source_is_relative_to_the_bundle():
    plan = parse_mount({"destination": "/x", "type": "none", "source": "data",
                        "options": ["bind"]}, 0, "/the/bundle")
    assert plan.source == "/the/bundle/data"


@pytest.mark.parametrize("entry, error", [
    ({"destination": "/x", "type": "none", "options": ["bind"]}, ConfigError),
    ({"destination": "/x", "options": []}, ConfigError),
    ({"destination": "/x", "type": "proc", "source": "proc", "options": ["tmpcopyup"]}, ConfigError),
    ({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]},
     ConfigError),
    ({"destination": "/x", "type": "none", "source": "/tmp", "options": ["rbind", "remount"]},
     NotSupported),
])
def test_impossible_mounts_are_refused(entry, error):
    with pytest.raises(error) as info:
        parse_mount(entry, 3, "/b")
    assert "mounts[3]" in str(info.value)


@pytest.mark.kernel
def test_tmpcopyup_copies_what_the_tmpfs_covers(pyrunc, bundle):
    (bundle.rootfs / "etc" / "sub").mkdir()
    (bundle.rootfs / "etc" / "sub" / "f").write_text("kept\n")
    (bundle.rootfs / "etc" / "link").symlink_to("sub/f")
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", ("cat /etc/sub/f /etc/link; readlink /etc/link; "
                               "grep ' /etc ' /proc/self/mountinfo | cut -d' ' -f9; "
                               "echo new > /etc/sub/g && echo writable")]
    cfg["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                          "options": ["tmpcopyup", "mode=755"]})
    bundle.write()
    res = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split() == ["kept", "kept", "sub/f", "tmpfs", "writable"]
    assert not (bundle.rootfs / "etc" / "sub" / "g").exists()  # the write stayed in the tmpfs


@pytest.mark.parametrize("opt", ["strictatime", "noatime", "rnoatime"])
def test_atime_mode_clears_the_whole_atime_field(opt):
    plan = parse_mount({"destination": "/x", "type": "bind", "source": "/tmp",
                        "options": ["bind", opt]}, 0, "/b")
    set_, clr = (plan.rec_attr_set, plan.rec_attr_clr) if opt[0] == "r" else (plan.attr_set,
                                                                               plan.attr_clr)
    assert clr & L.MOUNT_ATTR__ATIME == L.MOUNT_ATTR__ATIME
    assert set_ & L.MOUNT_ATTR__ATIME == (L.MOUNT_ATTR_STRICTATIME if opt == "strictatime"
                                          else L.MOUNT_ATTR_NOATIME)


@pytest.mark.kernel
@pytest.mark.parametrize("opt, shown", [("strictatime", ""), ("noatime", "noatime")])
def test_bind_mount_with_atime_mode(pyrunc, bundle, opt, shown):
    # runtime-tools' mounts program binds /etc with nosuid,strictatime: it used to fail EINVAL.
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "grep ' /mnt/etc ' /proc/self/mountinfo | cut -d' ' -f6"]
    cfg["mounts"].append({"destination": "/mnt/etc", "type": "none", "source": "/etc",
                          "options": ["bind", "nosuid", opt, "mode=755"]})
    bundle.write()
    res = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert res.returncode == 0, res.stderr
    flags = res.stdout.decode().strip().split(",")
    assert "nosuid" in flags, flags
    if shown:
        assert shown in flags, flags
    else:
        assert not {"noatime", "relatime"} & set(flags), flags


@pytest.mark.kernel
def test_bind_propagation_options_survive_the_pivot(pyrunc, bundle):
    # The old root's recursive slave after pivot_root must not reach the container's own
    # mounts: a "shared" bind stays shared (runc's behaviour; runtime-spec config.md mounts).
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "grep ' /mnt/' /proc/self/mountinfo"]
    for kind in ("shared", "private", "unbindable"):
        cfg["mounts"].append({"destination": f"/mnt/{kind}", "type": "none", "source": "/etc",
                              "options": ["bind", kind]})
    bundle.write()
    res = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert res.returncode == 0, res.stderr
    tags = {}
    for line in res.stdout.decode().splitlines():
        f = line.split()
        tags[f[4]] = f[6:f.index("-")]
    assert any(t.startswith("shared:") for t in tags["/mnt/shared"]), tags
    assert tags["/mnt/private"] == [], tags
    assert tags["/mnt/unbindable"] == ["unbindable"], tags
