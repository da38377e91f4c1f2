"""The cgroup v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE program built from device rules.

cgroup2 has no devices.allow/deny; the kernel instead runs the BPF programs attached to the
cgroup on every open/mknod of a device node, and refuses (EPERM) when one returns 0. We
assemble the few instructions such a program needs ourselves (no compiler, no libbpf): the
rules are tested last to first, the first that matches decides, and nothing matching means
deny, which is how a list of v1 devices.allow/deny writes ending on the same rules behaves.

Attaching uses BPF_F_ALLOW_MULTI, as runc does: a new filter goes on next to the old one
(both must allow, so the switch never opens a gap) and the old one is detached afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from pyrunc.errors import PyruncError
from pyrunc.linux import _check, _syscall

SYS_bpf = 321  # x86_64

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx: u32 access_type ((access << 16) | type), u32 major, u32 minor
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}

# Opcodes (class | op | source) for the handful of instructions the filter uses.
_LDX_W = 0x61       # dst = *(u32 *)(src + off)
_AND32_K = 0x54     # dst &= imm (32-bit)
_RSH32_K = 0x74     # dst >>= imm (32-bit)
_MOV32_X = 0xBC     # dst = src (32-bit)
_MOV64_K = 0xB7     # dst = imm
_JNE_K = 0x55       # if dst != imm: pc += off
_EXIT = 0x95


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


class Rule:
    """One device rule: kind "a", "b" or "c"; major/minor None for any; access a subset of rwm."""

    def __init__(self, allow: bool, kind: str = "a", major: int | None = None,
                 minor: int | None = None, access: str = "rwm") -> None:
        self.allow, self.kind, self.major, self.minor = allow, kind, major, minor
        self.access = 0
        for ch in access or "rwm":
            self.access |= _ACCESS[ch]

    def __repr__(self) -> str:
        return f"Rule({self.allow}, {self.kind!r}, {self.major}, {self.minor}, {self.access})"


def assemble(rules: list[Rule]) -> bytes:
    """The program: r2 = device type, r3 = requested access, r4 = major, r5 = minor; then one
    block per rule (last rule first) that jumps past itself on any mismatch, else returns the
    rule's verdict; finally return 0 (deny). The verifier refuses unreachable instructions, so
    the program ends at the first rule (from the end) that matches every access."""
    prog = [_insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),
            _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),
            _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8)]
    for rule in reversed(rules):
        checks: list[tuple[int, int]] = []   # (register, value it must equal)
        if rule.kind in _TYPES:
            checks.append((2, _TYPES[rule.kind]))
        if rule.major is not None:
            checks.append((4, rule.major))
        if rule.minor is not None:
            checks.append((5, rule.minor))
        block_len = len(checks) + 2 + (3 if rule.access != 7 else 0)
        body = []
        for reg, value in checks:
            body.append((_JNE_K, reg, value))
        if rule.access != 7:
            # r1 = access & ~rule.access: any bit asked for that the rule does not cover -> skip
            body.append((_MOV32_X, 1, 3))
            body.append((_AND32_K, 1, ~rule.access & 7))
            body.append((_JNE_K, 1, 0))
        for i, (op, reg, value) in enumerate(body):
            if op == _JNE_K:
                prog.append(_insn(op, reg, off=block_len - i - 1, imm=value))
            elif op == _MOV32_X:
                prog.append(_insn(op, reg, value))
            else:
                prog.append(_insn(op, reg, imm=value))
        prog.append(_insn(_MOV64_K, 0, imm=1 if rule.allow else 0))
        prog.append(_insn(_EXIT))
        if not body:
            return b"".join(prog)  # matches everything: what follows is dead code, refused
    prog.append(_insn(_MOV64_K, 0, imm=0))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


def _bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    return _check(_syscall(SYS_bpf, cmd, ctypes.byref(attr), ctypes.sizeof(attr)), what)


def load(code: bytes) -> int:
    """BPF_PROG_LOAD; when the verifier refuses, a second load with its log explains why."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(1 << 16)
    for log_level in (0, 1):
        attr = ctypes.create_string_buffer(128)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                         ctypes.addressof(insns), ctypes.addressof(license_), log_level,
                         len(log) if log_level else 0, ctypes.addressof(log) if log_level else 0)
        struct.pack_into("16s", attr, 48, b"pyrunc_devices")
        try:
            return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
        except OSError as exc:
            error = exc
            if exc.errno != errno.EINVAL:
                break  # EPERM, ENOMEM...: not the program's fault, no log to get
    detail = [line for line in log.value.decode(errors="replace").splitlines()
              if line.strip() and not line.startswith("processed ")]
    raise PyruncError(f"linux.resources.devices: loading the cgroup v2 device filter: "
                      f"{error.strerror}{': ' + detail[-1] if detail else ''}") from None


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to this cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0,
                     ctypes.addressof(ids), len(ids))
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:min(count, len(ids))])


def _prog_fd(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, "bpf(BPF_PROG_GET_FD_BY_ID)")


def _attach_cmd(cmd: int, cgroup_fd: int, prog_fd: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(cmd, attr, "bpf(BPF_PROG_ATTACH)" if cmd == BPF_PROG_ATTACH else "bpf(BPF_PROG_DETACH)")


def install(directory: str, rules: list[Rule]) -> None:
    """Put a filter for `rules` on the cgroup2 directory, replacing the device filters there."""
    code = assemble(rules)
    cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached(cgroup_fd)
        prog_fd = load(code)
        try:
            _attach_cmd(BPF_PROG_ATTACH, cgroup_fd, prog_fd, BPF_F_ALLOW_MULTI)
        except OSError as exc:
            raise PyruncError(f"linux.resources.devices: attaching the device filter to "
                              f"{directory}: {exc.strerror}") from None
        finally:
            os.close(prog_fd)
        for prog_id in old:
            try:
                fd = _prog_fd(prog_id)
            except FileNotFoundError:
                continue  # detached meanwhile
            try:
                _attach_cmd(BPF_PROG_DETACH, cgroup_fd, fd, 0)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
    finally:
        os.close(cgroup_fd)


def rules_from_config(resources: dict, linux_devices: list[dict],
                      defaults: tuple[str, ...]) -> list[Rule]:
    """linux.resources.devices in order, then the default nodes and linux.devices (always
    allowed, as with runc). What no rule matches is denied."""
    out: list[Rule] = []
    for rule in resources.get("devices") or []:
        major, minor = rule.get("major"), rule.get("minor")
        out.append(Rule(bool(rule.get("allow")), rule.get("type") or "a",
                        None if major is None or major < 0 else major,
                        None if minor is None or minor < 0 else minor, rule.get("access") or "rwm"))
    for line in defaults:
        kind, numbers, access = line.split()
        major, minor = numbers.split(":")
        out.append(Rule(True, kind, None if major == "*" else int(major),
                        None if minor == "*" else int(minor), access))
    for dev in linux_devices:
        node = "c" if dev.get("type") == "u" else dev.get("type")
        if node in ("b", "c"):
            out.append(Rule(True, node, dev["major"], dev["minor"], "rwm"))
    return out
