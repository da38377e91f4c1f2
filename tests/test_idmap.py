"""idmapped mounts (mount uidMappings/gidMappings, `idmap`, `ridmap`): what the container sees
through the mount, and who owns on the host what it creates there.

The sources live on this host's ext4 (pytest's tmp directory), which supports idmapping. A mount
mapping `containerID C -> hostID H` shows a file stored with id C as host id H, and stores a
file created by host id H with id C (runc's integration tests use the same reading).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import one_line_error

pytestmark = pytest.mark.kernel

USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def idmapped(source: Path, dest: str, uids: list | None, gids: list | None,
             options: tuple[str, ...] = ("rbind", "idmap")) -> dict:
    entry: dict = {"destination": dest, "type": "bind", "source": str(source),
                   "options": list(options)}
    if uids is not None:
        entry["uidMappings"], entry["gidMappings"] = uids, gids
    return entry


def one(container: int, host: int, size: int = 1) -> list[dict]:
    return [{"containerID": container, "hostID": host, "size": size}]


def with_userns(cfg: dict) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = USERNS_MAP
    cfg["linux"]["gidMappings"] = USERNS_MAP


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "stored-5000").touch()
    os.chown(src / "stored-5000", 5000, 5001)
    (src / "stored-0").touch()
    return src


def test_created_file_is_owned_by_the_mapped_id_on_the_host(run_container, source):
    # The container's root (host 0) appears on disk as 5000:5001; a file stored as 5000:5001
    # appears as root inside.
    os.chown(source, 5000, 5001)  # the directory appears as root's: root may write (no caps)
    mount = idmapped(source, "/tmp", one(5000, 0), one(5001, 0))
    r = run_container(["sh", "-c", ("touch /tmp/made && mkdir /tmp/dir && "
                        "stat -c '%n %u:%g' /tmp/made /tmp/stored-5000 && "
                        "grep ' /tmp ' /proc/self/mountinfo")],
                      edit=lambda c: c["mounts"].append(mount))
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "/tmp/made 0:0" and lines[1] == "/tmp/stored-5000 0:0", r.out
    assert "idmapped" in lines[2].split(" - ")[0], lines[2]
    for name in ("made", "dir"):
        st = os.stat(source / name)
        assert (st.st_uid, st.st_gid) == (5000, 5001), name
    # Outside the mapping: a file stored as 0 has no id through this mount.
    r = run_container(["stat", "-c", "%u", "/tmp/stored-0"],
                      edit=lambda c: c["mounts"].append(mount))
    assert r.out.strip() == Path("/proc/sys/kernel/overflowuid").read_text().strip(), r


def test_unmapped_writer_is_refused_with_eoverflow(run_container, source):
    # runc's test: with 0:100000 and no user namespace, the container's root (host 0) has no
    # id on the mount, so the kernel refuses to create a file for it.
    mount = idmapped(source, "/tmp", one(0, 100000, 65536), one(0, 100000, 65536))
    r = run_container(["sh", "-c", "stat -c %u /tmp/stored-5000; touch /tmp/x"],
                      edit=lambda c: c["mounts"].append(mount))
    assert r.out.split()[0] == "105000", r
    assert r.rc != 0 and "Value too large" in r.err, r
    assert not (source / "x").exists()


def test_idmap_without_mappings_uses_the_containers_user_namespace(run_container, source):
    # podman's case: files stored as host root appear as the container's root, and what the
    # container's root (host 100000) creates is stored as 0.
    (source / "stored-0").chmod(0o666)
    mount = idmapped(source, "/tmp", None, None)

    def edit(cfg: dict) -> None:
        with_userns(cfg)
        cfg["mounts"].append(mount)
    r = run_container(["sh", "-c", ("stat -c %u:%g /tmp/stored-0 /tmp/stored-5000; "
                        "touch /tmp/made && stat -c %u /tmp/made")], edit=edit)
    assert r.rc == 0, r
    assert r.out.split() == ["0:0", "5000:5001", "0"]
    st = os.stat(source / "made")
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_explicit_mappings_inside_a_user_namespace(run_container, source):
    # 5000 on disk -> host 100000 -> the container's root.
    os.chown(source, 5000, 5001)
    mount = idmapped(source, "/tmp", one(5000, 100000), one(5001, 100000))

    def edit(cfg: dict) -> None:
        with_userns(cfg)
        cfg["mounts"].append(mount)
    r = run_container(["sh", "-c", "stat -c %u:%g /tmp/stored-5000; touch /tmp/made"], edit=edit)
    assert r.rc == 0, r
    assert r.out.split() == ["0:0"]
    st = os.stat(source / "made")
    assert (st.st_uid, st.st_gid) == (5000, 5001)


@pytest.fixture
def nested(source: Path, tmp_path: Path):
    """source/sub is a bind mount of another directory: the submount an rbind carries."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "inner").touch()
    os.chown(other / "inner", 5000, 5001)
    (source / "sub").mkdir()
    subprocess.run(["mount", "--bind", str(other), str(source / "sub")], check=True)
    yield source
    subprocess.run(["umount", "-l", str(source / "sub")], check=True)


@pytest.mark.parametrize("option, inner", [("ridmap", "0:0"), ("idmap", "5000:5001")])
def test_ridmap_maps_submounts_and_idmap_only_the_top(run_container, nested, option, inner):
    mount = idmapped(nested, "/tmp", one(5000, 0), one(5001, 0), ("rbind", option))
    r = run_container(["stat", "-c", "%u:%g", "/tmp/stored-5000", "/tmp/sub/inner"],
                      edit=lambda c: c["mounts"].append(mount))
    assert r.rc == 0, r
    assert r.out.split() == ["0:0", inner]


@pytest.mark.parametrize("entry, needle", [
    ({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]},
     "id-mapped mounts are only supported for bind-mounts"),
    ({"destination": "/tmp", "type": "bind", "source": "/tmp", "options": ["rbind", "ridmap"]},
     "idmap without uidMappings/gidMappings needs the container's user namespace"),
])
def test_impossible_idmapped_mounts_are_refused(run_container, entry, needle):
    r = run_container(["true"], edit=lambda c: c["mounts"].append(entry))
    assert r.rc == 1, r
    assert needle in one_line_error(r.err)


def test_a_filesystem_without_idmapping_fails_cleanly(run_container):
    # procfs cannot be idmapped: the error names the mount, and nothing is left behind.
    mount = idmapped(Path("/proc/self"), "/tmp", one(0, 1000), one(0, 1000), ("bind", "idmap"))
    r = run_container(["true"], edit=lambda c: c["mounts"].append(mount))
    assert r.rc == 1, r
    line = one_line_error(r.err)
    assert "/tmp: idmapping /proc/self" in line, line


def test_idmap_without_mappings_in_a_joined_user_namespace(pyrunc, bundle, run_container, source):
    # Joining a user namespace by path: the mount is idmapped with that namespace itself.
    cfg = json.loads(json.dumps(bundle.config))
    cfg["process"]["args"] = ["sleep", "1000"]
    with_userns(cfg)
    bundle.write(cfg)
    holder = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", str(bundle.path), holder, check=True, capture_output=False,
           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = pyrunc.state(holder)["pid"]
    (source / "stored-0").chmod(0o666)

    def edit(c: dict) -> None:
        c["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{pid}/ns/user"})
        c["mounts"].append(idmapped(source, "/tmp", None, None))
    r = run_container(["sh", "-c", "stat -c %u /tmp/stored-0; touch /tmp/made"], edit=edit)
    assert r.rc == 0, r
    assert r.out.split() == ["0"]
    assert os.stat(source / "made").st_uid == 0
    pyrunc("delete", "--force", holder, check=True)
