"""process.capabilities: the five sets read back from /proc/self/status inside the container.

The runtime sets the sets right before execve; execve then applies the kernel's rules
(capabilities(7)), the same for runc (1.1.5 gives the bits below for the same configs):
  uid 0:     permitted = effective = inheritable | bounding; ambient and inheritable kept
  uid != 0:  permitted = effective = ambient (a binary without file capabilities)
"""

from __future__ import annotations

import pytest
from conftest import one_line_error

from pyrunc.capabilities import NUMBER

pytestmark = pytest.mark.kernel

SETS = {
    "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_KILL"],
    "permitted": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_KILL"],
    "effective": ["CAP_CHOWN", "CAP_NET_ADMIN"],
    "inheritable": ["CAP_NET_RAW", "CAP_NET_ADMIN"],
    "ambient": ["CAP_NET_ADMIN"],
}


def bits(names: list[str]) -> int:
    out = 0
    for name in names:
        out |= 1 << NUMBER[name]
    return out


def status(out: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines()
                                       if line.startswith("Cap"))}


def with_caps(caps: dict | None, uid: int):
    def edit(cfg: dict) -> None:
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
        cfg["process"]["noNewPrivileges"] = False
        if caps is None:
            del cfg["process"]["capabilities"]
        else:
            cfg["process"]["capabilities"] = caps
    return edit


@pytest.mark.parametrize("uid", [0, 1000])
def test_five_sets_exactly(run_container, uid):
    r = run_container(["cat", "/proc/self/status"], edit=with_caps(SETS, uid))
    assert r.rc == 0, r
    got = status(r.out)
    bnd, inh, amb = bits(SETS["bounding"]), bits(SETS["inheritable"]), bits(SETS["ambient"])
    prm = (inh | bnd) if uid == 0 else amb
    assert got == {"CapInh": inh, "CapPrm": prm, "CapEff": prm, "CapBnd": bnd, "CapAmb": amb}


def test_ambient_makes_a_non_root_process_keep_its_capability(run_container):
    # CAP_NET_ADMIN ambient: usable by uid 1000 after execve (lo's MTU in its own netns).
    r = run_container(["ip", "link", "set", "lo", "mtu", "1280"], edit=with_caps(SETS, 1000))
    assert r.rc == 0, r
    no_ambient = dict(SETS, ambient=[])
    r = run_container(["ip", "link", "set", "lo", "mtu", "1280"],
                      edit=with_caps(no_ambient, 1000))
    assert r.rc != 0, r


def test_ambient_not_permitted_and_inheritable_is_dropped(run_container):
    # runc's starter config asks for ambient capabilities without inheritable ones.
    caps = dict(SETS, ambient=["CAP_NET_ADMIN", "CAP_KILL"])
    r = run_container(["cat", "/proc/self/status"], edit=with_caps(caps, 1000))
    assert r.rc == 0, r
    assert status(r.out)["CapAmb"] == bits(["CAP_NET_ADMIN"])


@pytest.mark.parametrize("uid", [0, 1000])
def test_no_capabilities_object_grants_nothing(run_container, uid):
    # runc 1.1.5 runs such a config with every set empty, root included (measured).
    r = run_container(["cat", "/proc/self/status"], edit=with_caps(None, uid))
    assert r.rc == 0, r
    assert set(status(r.out).values()) == {0}, r.out


@pytest.mark.parametrize("kind", ["bounding", "ambient"])
def test_unknown_capability_refused(pyrunc, run_container, kind):
    # runc and crun both accept CAP_TEST; pyrunc names it.
    caps = dict(SETS, **{kind: [*SETS[kind], "CAP_TEST"]})
    r = run_container(["true"], edit=with_caps(caps, 0))
    assert r.rc == 1, r
    line = one_line_error(r.err)
    assert f"/process/capabilities/{kind}/{len(SETS[kind])}" in line and "CAP_TEST" in line
    assert not (pyrunc.root / r.cid).exists()


@pytest.mark.parametrize("guess", [40, 0, 39, 41, 63])
def test_last_cap_is_the_kernels(guess):
    """capabilities.last_cap finds the kernel's last capability by PR_CAPBSET_READ: the same
    number /proc/sys/kernel/cap_last_cap gives, from a right guess (two calls) or a wrong one
    (the search)."""
    from pyrunc import capabilities
    with open("/proc/sys/kernel/cap_last_cap") as f:
        kernel = int(f.read())
    assert capabilities._probe_last_cap(guess) == kernel
    assert capabilities.last_cap() == kernel
