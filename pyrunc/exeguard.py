"""The container's program is exec'd by a sealed in-memory trampoline, never by our Python.

Why (CVE-2019-5736 class, DESIGN.md section 6): until its last execve, the init (and an exec'd
process) is the host's Python interpreter. A program whose shebang is `#!/proc/self/exe` makes
the kernel open *our* /proc/self/exe during that execve, so the container would run the host's
python3 binary as its interpreter, keep an fd to it and rewrite it once nothing executes it.
runc and crun re-exec a sealed memfd copy of themselves; copying the 6.8 MB interpreter on every
call would cost more than the rest of `exec`. Instead the process execs a ~400-byte static ELF
assembled below, from a memfd sealed against any change (F_SEAL_SEAL|SHRINK|GROW|WRITE), and the
trampoline execs the real program. Whatever the program's execve then resolves as /proc/self/exe
is that sealed memfd.

The contract (argv of the trampoline): ["E,F,...", path, argv0, argv1, ...], envp unchanged.
 - E, F, ...: fds (decimal) that must survive the trampoline's exec but not the program's: the
   trampoline sets FD_CLOEXEC on each. E is where a failed execve is reported: an 8-byte record
   (MAGIC, errno as little-endian u32) followed by the path, in one writev (one packet on the
   exec's SEQPACKET socket, or the start.err file of a created container); then it exits 127
   for ENOENT, else 126. failure() turns the record back into the runtime's usual one line.
 - Anything else (argc < 3, argv[0] not starting with a digit: e.g. it was started as a
   script's interpreter) exits 126 at once, having touched nothing.
The fds stay open until the program's execve, so `start` (exec fifo) and `exec` (sync socket)
still return only once the program runs, as before.

Nobody in the container can reach the trampoline's fds or patch it while it runs: the memfd is
created before the container's user namespace is entered (its owner is the caller, unmapped in
a container with its own user namespace), has mode 0111 and the process execs it with an empty
effective capability set (execve recomputes effective from permitted, inheritable, ambient and
the file, so the program's capabilities do not change). The kernel then finds the file not
readable by the process and makes the trampoline non-dumpable during the exec itself
(BINPRM_FLAGS_ENFORCE_NONDUMP, with mm->user_ns the owner's namespace), which is what our
Python process was: only CAP_SYS_PTRACE in that namespace opens its /proc/<pid>/exe or fds.

Seccomp: the filter is loaded before the trampoline's exec. We enter it with execveat(memfd, "",
AT_EMPTY_PATH) (no path in the container involved) when the profile allows execveat without
conditions, otherwise with execve("/proc/self/fd/N"), the very syscall the program's exec uses,
so a profile that lets the program start lets the trampoline start. The trampoline itself also
needs fcntl, writev (on failure) and exit_group. On architectures without a trampoline
(image() is None), or when neither way in exists (no /proc and no execveat), the program is
exec'd directly as before; `features` reports which case a host is in.
"""

from __future__ import annotations

import _struct as struct  # not `struct`: it only re-exports _struct (~0.25 M instructions)
import errno
import sys

from pyrunc import capabilities
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import runc_wording

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from pyrunc.seccomp import Filter

MAGIC = b"\0EXE"
_BASE = 0x400000  # where the image is mapped (above vm.mmap_min_addr)

# x86_64: the code, one instruction a line (offsets in the comments are from the entry point;
# jumps are relative to the next instruction). At entry rsp points at argc, then argv[], NULL,
# envp[], NULL (the SysV process start). rbx keeps &argc, r12 the error fd, r13 walks argv[0].
_X86_64 = bytes.fromhex(
    "4889e3"           # 00 mov rbx, rsp
    "48833b03"         # 03 cmp qword [rbx], 3          argc >= 3
    "0f82b9000000"     # 07 jb misuse (c6)
    "4c8b6b08"         # 0d mov r13, [rbx+8]            argv[0] = "E,F,..."
    "410fb64500"       # 11 movzx eax, byte [r13]
    "83e830"           # 16 sub eax, '0'
    "83f809"           # 19 cmp eax, 9
    "0f87a4000000"     # 1c ja misuse (c6)              must start with a digit
    "4183ccff"         # 22 or r12d, -1                 no error fd yet
    "31ff"             # 26 next: xor edi, edi          edi = the number being read
    "410fb64500"       # 28 digit: movzx eax, byte [r13]
    "49ffc5"           # 2d inc r13
    "83e830"           # 30 sub eax, '0'
    "83f809"           # 33 cmp eax, 9
    "7707"             # 36 ja endnum (3f)              ',' or NUL ends a number
    "6bff0a"           # 38 imul edi, edi, 10
    "01c7"             # 3b add edi, eax
    "ebe9"             # 3d jmp digit (28)
    "4585e4"           # 3f endnum: test r12d, r12d
    "7903"             # 42 jns have (47)
    "4189fc"           # 44 mov r12d, edi               the first fd is the error fd
    "be02000000"       # 47 have: mov esi, F_SETFD
    "ba01000000"       # 4c mov edx, FD_CLOEXEC
    "b848000000"       # 51 mov eax, SYS_fcntl
    "0f05"             # 56 syscall
    "4885c0"           # 58 test rax, rax
    "781e"             # 5b js fail (7b)
    "41807dff00"       # 5d cmp byte [r13-1], 0         was that the last number?
    "75c2"             # 62 jne next (26)
    "488b7b10"         # 64 mov rdi, [rbx+16]           path = argv[1]
    "488d7318"         # 68 lea rsi, [rbx+24]           &argv[2]
    "488b0b"           # 6c mov rcx, [rbx]
    "488d54cb10"       # 6f lea rdx, [rbx+rcx*8+16]     envp = &argv[argc+1]
    "b83b000000"       # 74 mov eax, SYS_execve
    "0f05"             # 79 syscall                     returns only on failure
    "f7d8"             # 7b fail: neg eax               errno
    "4189c6"           # 7d mov r14d, eax
    "48c1e020"         # 80 shl rax, 32
    "480d00455845"     # 84 or rax, 0x45584500          MAGIC, then errno (little-endian)
    "50"               # 8a push rax                    the 8-byte header
    "4989e7"           # 8b mov r15, rsp
    "488b7310"         # 8e mov rsi, [rbx+16]           path
    "31d2"             # 92 xor edx, edx
    "803c1600"         # 94 len: cmp byte [rsi+rdx], 0
    "7405"             # 98 je write (9f)
    "48ffc2"           # 9a inc rdx
    "ebf5"             # 9d jmp len (94)
    "52"               # 9f write: push rdx             iov[1] = {path, strlen(path)}
    "56"               # a0 push rsi
    "6a08"             # a1 push 8                      iov[0] = {header, 8}
    "4157"             # a3 push r15
    "4489e7"           # a5 mov edi, r12d
    "4889e6"           # a8 mov rsi, rsp
    "ba02000000"       # ab mov edx, 2
    "b814000000"       # b0 mov eax, SYS_writev
    "0f05"             # b5 syscall
    "bf7e000000"       # b7 mov edi, 126
    "4183fe02"         # bc cmp r14d, ENOENT
    "7509"             # c0 jne quit (cb)
    "ffc7"             # c2 inc edi                     127: not found
    "eb05"             # c4 jmp quit (cb)
    "bf7e000000"       # c6 misuse: mov edi, 126
    "b8e7000000"       # cb quit: mov eax, SYS_exit_group
    "0f05"             # d0 syscall
    "0f0b"             # d2 ud2
)

# aarch64: the same steps, one 32-bit instruction a word (x19 = &argc, w21 the error fd, x20
# walks argv[0]; syscall number in x8, svc #0). Checked by running it under qemu-aarch64 (the
# programs it execs, native ones, then run on the host): see tests/test_exeguard.py.
_AARCH64 = struct.pack("<66I",
    0x910003F3,   # 00 mov x19, sp                x19 = &argc
    0xF9400260,   # 04 ldr x0, [x19]
    0xF1000C1F,   # 08 cmp x0, #0x3               argc >= 3
    0x54000763,   # 0c b.cc f8 <misuse>
    0xF9400674,   # 10 ldr x20, [x19, #8]         x20 walks argv[0] = "E,F,..."
    0x39400281,   # 14 ldrb w1, [x20]
    0x5100C021,   # 18 sub w1, w1, #0x30
    0x7100243F,   # 1c cmp w1, #0x9
    0x540006C8,   # 20 b.hi f8 <misuse>           must start with a digit
    0x12800015,   # 24 mov w21, #0xffffffff       w21 = error fd, not yet set
    0x52800000,   # 28 mov w0, #0x0               next: the number being read
    0x38401681,   # 2c ldrb w1, [x20], #1         digit:
    0x5100C021,   # 30 sub w1, w1, #0x30
    0x7100243F,   # 34 cmp w1, #0x9
    0x54000088,   # 38 b.hi 48 <endnum>           ',' or NUL ends a number
    0x52800142,   # 3c mov w2, #0xa
    0x1B020400,   # 40 madd w0, w0, w2, w1
    0x17FFFFFA,   # 44 b 2c <digit>
    0x36F80055,   # 48 tbz w21, #31, 50 <have>    endnum:
    0x2A0003F5,   # 4c mov w21, w0                the first fd is the error fd
    0xD2800041,   # 50 mov x1, #0x2               have: fcntl(fd, F_SETFD, FD_CLOEXEC)
    0xD2800022,   # 54 mov x2, #0x1
    0xD2800328,   # 58 mov x8, #0x19
    0xD4000001,   # 5c svc #0x0
    0xB7F80140,   # 60 tbnz x0, #63, 88 <fail>    an error: fail
    0x385FF281,   # 64 ldurb w1, [x20, #-1]       was that the last number?
    0x35FFFE01,   # 68 cbnz w1, 28 <next>
    0xF9400A60,   # 6c ldr x0, [x19, #16]         path = argv[1]
    0x91006261,   # 70 add x1, x19, #0x18         &argv[2]
    0xF9400262,   # 74 ldr x2, [x19]
    0x8B020E62,   # 78 add x2, x19, x2, lsl #3
    0x91004042,   # 7c add x2, x2, #0x10          envp = &argv[argc+1]
    0xD2801BA8,   # 80 mov x8, #0xdd              SYS_execve
    0xD4000001,   # 84 svc #0x0                   returns only on failure
    0x4B0003F6,   # 88 neg w22, w0                fail: errno
    0x5288A003,   # 8c mov w3, #0x4500            MAGIC
    0x72A8AB03,   # 90 movk w3, #0x4558, lsl #16
    0xD100C3FF,   # 94 sub sp, sp, #0x30          header, then iov[2]
    0xB90003E3,   # 98 str w3, [sp]
    0xB90007F6,   # 9c str w22, [sp, #4]
    0xF9400A64,   # a0 ldr x4, [x19, #16]
    0xD2800005,   # a4 mov x5, #0x0
    0x38656886,   # a8 ldrb w6, [x4, x5]          len: strlen(path)
    0x34000066,   # ac cbz w6, b8 <write>
    0x910004A5,   # b0 add x5, x5, #0x1
    0x17FFFFFD,   # b4 b a8 <len>
    0x910003E6,   # b8 mov x6, sp                 write: iov[0] = {header, 8}
    0xF9000BE6,   # bc str x6, [sp, #16]
    0xD2800106,   # c0 mov x6, #0x8
    0xF9000FE6,   # c4 str x6, [sp, #24]
    0xF90013E4,   # c8 str x4, [sp, #32]          iov[1] = {path, len}
    0xF90017E5,   # cc str x5, [sp, #40]
    0x2A1503E0,   # d0 mov w0, w21
    0x910043E1,   # d4 add x1, sp, #0x10
    0xD2800042,   # d8 mov x2, #0x2
    0xD2800848,   # dc mov x8, #0x42              SYS_writev
    0xD4000001,   # e0 svc #0x0
    0x52800FC0,   # e4 mov w0, #0x7e              126, or 127 for ENOENT
    0x71000ADF,   # e8 cmp w22, #0x2
    0x54000081,   # ec b.ne fc <quit>
    0x52800FE0,   # f0 mov w0, #0x7f
    0x14000002,   # f4 b fc <quit>
    0x52800FC0,   # f8 mov w0, #0x7e              misuse:
    0xD2800BC8,   # fc mov x8, #0x5e              quit: SYS_exit_group
    0xD4000001,   # 100 svc #0x0
    0x00000000,   # 104 udf #0
)

_MACHINES = {"x86_64": (62, _X86_64), "aarch64": (183, _AARCH64)}  # uname machine -> (ELF e_machine, code)

# The wait for `start`, in front of the x86_64 trampoline (create's init, where can_wait says
# so): with argv[0] "w" + the usual fd list, it installs a handler on every signal the Python
# init's own wait handles (init._FATAL; it exits 128+signal, and without a handler the
# container's PID 1 would ignore them), polls and reads one byte from the exec fifo, then
# drops the "w" and goes on into the trampoline. EOF (a `start` that gave up) exits 1; EAGAIN
# and EINTR poll again. So between create and start the container's init is this program, not
# our Python interpreter: ~10 KB resident instead of ~9.5 MB, and `start` wakes up a read
# instead of an interpreter. rbp holds the fifo's fd, patched in at _WAIT_FD_AT; r15 the
# signals left alone (a bit per number), at _WAIT_SKIP_AT; r14 counts 1..64.
_X86_64_WAIT = bytes.fromhex(
    "488b442408"       # 00 mov rax, [rsp+8]             argv[0]
    "803877"           # 05 cmp byte [rax], 'w'
    "0f85c3000000"     # 08 jne trampoline (d1)          no wait asked: straight on
    "48ffc0"           # 0e inc rax
    "4889442408"       # 11 mov [rsp+8], rax             argv[0] without its "w"
    "bdffffffff"       # 16 mov ebp, FIFO                patched: the exec fifo's fd
    "4883ec20"         # 1b sub rsp, 32                  struct sigaction (the kernel's)
    "488d059e000000"   # 1f lea rax, [rip+handler (c4)]
    "48890424"         # 26 mov [rsp], rax               sa_handler
    "48c744240800000004"  # 2a mov qword [rsp+8], SA_RESTORER
    "4889442410"       # 33 mov [rsp+16], rax            sa_restorer (never returned to)
    "48c744241800000000"  # 38 mov qword [rsp+24], 0     sa_mask
    "49bfffffffffffffffff"  # 41 mov r15, SKIP           patched: the signals left alone
    "41be01000000"     # 4b mov r14d, 1
    "4d0fa3f7"         # 51 sigloop: bt r15, r14
    "7215"             # 55 jc signext (6c)
    "4489f7"           # 57 mov edi, r14d
    "4889e6"           # 5a mov rsi, rsp
    "31d2"             # 5d xor edx, edx
    "41ba08000000"     # 5f mov r10d, 8                  sigsetsize
    "b80d000000"       # 65 mov eax, SYS_rt_sigaction
    "0f05"             # 6a syscall                      an error leaves that one as it was
    "41ffc6"           # 6c signext: inc r14d
    "4183fe40"         # 6f cmp r14d, 64
    "76dc"             # 73 jbe sigloop (51)
    "4883c420"         # 75 add rsp, 32
    "6a01"             # 79 wait: push 1
    "48c1242420"       # 7b shl qword [rsp], 32          struct pollfd {FIFO, POLLIN, 0}
    "892c24"           # 80 mov [rsp], ebp
    "4889e7"           # 83 mov rdi, rsp
    "be01000000"       # 86 mov esi, 1
    "baffffffff"       # 8b mov edx, -1                  no timeout
    "b807000000"       # 90 mov eax, SYS_poll
    "0f05"             # 95 syscall
    "89ef"             # 97 mov edi, ebp
    "4889e6"           # 99 mov rsi, rsp                 one byte, into the pollfd's place
    "ba01000000"       # 9c mov edx, 1
    "31c0"             # a1 xor eax, eax                 SYS_read
    "0f05"             # a3 syscall
    "59"               # a5 pop rcx
    "4883f801"         # a6 cmp rax, 1
    "7425"             # aa je trampoline (d1)           start said go
    "4883f8f5"         # ac cmp rax, -EAGAIN
    "74c7"             # b0 je wait (79)
    "4883f8fc"         # b2 cmp rax, -EINTR
    "74c1"             # b6 je wait (79)
    "bf01000000"       # b8 mov edi, 1                   EOF or an error: no start
    "b8e7000000"       # bd mov eax, SYS_exit_group
    "0f05"             # c2 syscall
    "81c780000000"     # c4 handler: add edi, 128        edi: the signal
    "b8e7000000"       # ca mov eax, SYS_exit_group
    "0f05"             # cf syscall
)                      # d1 trampoline: _X86_64 follows
_WAIT_FD_AT, _WAIT_SKIP_AT = 0x17, 0x43
# What init._FATAL leaves out (KILL, CHLD, CONT, STOP, TSTP, TTIN, TTOU, URG, WINCH), and 32
# and 33, which glibc keeps for itself (Python's valid_signals() has neither).
_WAIT_SKIPS = (9, 17, 18, 19, 20, 21, 22, 23, 28, 32, 33)


def _elf(machine: int, code: bytes) -> bytes:
    """A static ELF64 executable: the header, a PT_LOAD mapping the whole file read+exec at
    _BASE, a PT_GNU_STACK asking for a non-executable stack, then the code (the entry point)."""
    ehsize, phsize, phnum = 64, 56, 2
    entry_off = ehsize + phsize * phnum
    size = entry_off + len(code)
    header = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0,          # ELFCLASS64, little-endian, version 1, SysV ABI
        2, machine, 1,                      # ET_EXEC, e_machine, EV_CURRENT
        _BASE + entry_off, ehsize, 0,       # e_entry, e_phoff, e_shoff
        0, ehsize, phsize, phnum, 0, 0, 0)  # e_flags, sizes, no sections
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, RW
    return header + load + stack + code


# (machine, waits) -> the image, with fd 0 where the waiting one names the fifo: built once,
# by prebuild() in create's parent, so that its init only copies it and writes its fifo's fd
# in (in a freshly forked child, every page the build would touch is copied first).
_BUILT: dict[tuple[str, bool], bytes | None] = {}
_WAIT_FD_OFFSET = 64 + 56 * 2 + _WAIT_FD_AT   # in the image: after the ELF and program headers


def prebuild(wait: bool) -> None:
    """Build the image create's init will ask for (image(fifo fd), or image()) now, before fork."""
    machine = os.uname().machine
    if (machine, wait) not in _BUILT:
        _BUILT[machine, wait] = _build(machine, wait)


def _build(machine: str, wait: bool) -> bytes | None:
    found = _MACHINES.get(machine)
    if not found:
        return None
    e_machine, code = found
    if wait:
        image = bytearray(_X86_64_WAIT)
        skip = sum(1 << signal for signal in _WAIT_SKIPS)
        image[_WAIT_SKIP_AT:_WAIT_SKIP_AT + 8] = skip.to_bytes(8, "little")
        code = bytes(image) + code
    return _elf(e_machine, code)


def image(wait_fd: int = -1) -> bytes | None:
    """The trampoline for this machine, or None where we have none (see features()); with
    wait_fd, the one that first waits for `start` on that fifo (can_wait: x86_64 only)."""
    wait = wait_fd >= 0
    if _BUILT:   # prebuilt (create's init): no uname either, the parent's machine is ours
        machine = next(iter(_BUILT))[0]
    else:
        machine = os.uname().machine
    built = _BUILT.get((machine, wait))
    if built is None and (machine, wait) not in _BUILT:
        built = _build(machine, wait)
    if built is None or not wait:
        return built
    patched = bytearray(built)
    patched[_WAIT_FD_OFFSET:_WAIT_FD_OFFSET + 4] = wait_fd.to_bytes(4, "little")
    return bytes(patched)


def can_wait(cfg: dict) -> bool:
    """Whether create's init can leave the wait for `start` to the trampoline (image(wait_fd)):
    on x86_64, where nothing has to happen in the init between the start signal and the
    program's execve (startContainer hooks; an LSM label, which /proc/self/attr/exec applies
    at the very next execve, the trampoline's), and where the seccomp profile, loaded before
    that wait then, surely lets the trampoline's own calls through (exeguard enters it with
    execveat; then rt_sigaction, poll and read, besides fcntl, writev and exit_group, which
    the trampoline needs anyway)."""
    if os.uname().machine != "x86_64":
        return False
    proc = cfg.get("process") or {}
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        return False
    if (cfg.get("hooks") or {}).get("startContainer"):
        return False
    sc = (cfg.get("linux") or {}).get("seccomp")
    return all(allows(sc, name) for name in ("execveat", "rt_sigaction", "poll", "read"))


_MFD_EXEC = 0x10  # kernels >= 6.3 with vm.memfd_noexec = 1 want it said; older ones refuse it


def create(wait_fd: int = -1) -> int:
    """The trampoline in a sealed, close-on-exec memfd (one per call), or -1 without one;
    with wait_fd, the one that waits for `start` on it (image). Called before entering the
    container's user namespace (see the module docstring)."""
    code = image(wait_fd)
    if code is None:
        return -1
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    fd = -1
    try:
        try:
            fd = os.memfd_create("pyrunc-exe", flags | _MFD_EXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            fd = os.memfd_create("pyrunc-exe", flags)
        os.write(fd, code)
        os.fchmod(fd, 0o111)  # executable, readable by no one without CAP_DAC_*
        import fcntl
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise OSError(exc.errno, "making the exec trampoline (a sealed memfd): "
                      f"{(exc.strerror or '').lower()}") from None
    return fd


def allows(sc: dict | None, name: str) -> bool:
    """Whether a seccomp profile surely lets `name` through, whatever its arguments."""
    if not sc:
        return True
    ok = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    unconditional = sc.get("defaultAction") in ok
    for rule in sc.get("syscalls") or []:
        if name in (rule.get("names") or ()):
            if rule.get("action") not in ok:
                return False
            if not rule.get("args"):
                unconditional = True
    return unconditional


def execute(memfd: int, exe: str, proc: dict, env: dict[str, str], keep: tuple[int, ...],
            flt: Filter | None, wait: bool = False,
            caps: dict[str, list[int]] | None = None) -> NoReturn:
    """The final exec of `exe` with proc["args"], through the trampoline in `memfd`. keep: fds
    (the first one gets the errno if the program's execve fails) the trampoline closes at it;
    flt: the seccomp filter just loaded, if any; wait: the trampoline was made to wait for
    `start` first (create(wait_fd), can_wait); caps: proc's capabilities.parse, if the caller
    has it. Raises OSError naming `exe` if the trampoline itself cannot be exec'd (the
    program's execve would have failed the same way)."""
    if caps is None:
        caps = capabilities.parse(proc.get("capabilities"))
    admin = False
    if flt is not None:   # no import statement otherwise: each costs a forked child copied pages
        from pyrunc.process import seccomp_needs_admin
        admin = seccomp_needs_admin(proc, caps)
    if memfd < 0:
        if admin:
            capabilities.apply_sets(caps, ambient=False)
        os.execve(exe, proc["args"], env)
    if caps["effective"] or admin:
        # Nothing effective: the trampoline, unreadable to us, is then non-dumpable. The
        # program's effective set is computed by its execve from the other sets, not from this.
        try:
            capabilities.apply_sets(dict(caps, effective=[]), ambient=False)
        except OSError:
            if admin:
                raise
    os.set_inheritable(memfd, False)  # even if it got a number in the preserved range
    execveat = flt is None or flt.execveat
    for fd in keep:
        os.set_inheritable(fd, True)
    argv = [("w" if wait else "") + ",".join(str(fd) for fd in keep), exe, *proc["args"]]
    try:
        if execveat:
            os.execve(memfd, argv, env)  # fexecve: execveat(memfd, "", AT_EMPTY_PATH)
        os.execve(f"/proc/self/fd/{memfd}", argv, env)
    except OSError as exc:
        if execveat or exc.errno != errno.ENOENT:
            raise OSError(exc.errno, exc.strerror, exe) from None
    # No /proc in the container and a profile that does not allow execveat: as before.
    for fd in keep:
        os.set_inheritable(fd, False)
    os.execve(exe, proc["args"], env)


def failure(data: bytes) -> str | None:
    """The trampoline's report ("path: no such file or directory"), or None if it is not one."""
    if len(data) < 8 or data[:4] != MAGIC:
        return None
    text = runc_wording(os.strerror(int.from_bytes(data[4:8], "little")))
    path = data[8:].decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    return f"{path}: {text}"   # what os.fsdecode does


def wait_exec(sock) -> str | None:
    """Read the exec's sync socket until every holder closed it (the program's execve, or the
    trampoline's exit): the trampoline's report if it sent one."""
    failed = None
    while True:
        data = sock.recv(65536)
        if not data:
            return failed
        failed = failure(data) or failed


def features() -> str:
    """For `pyrunc features`: the machine the trampoline is built for, or "none"."""
    machine = os.uname().machine
    return machine if machine in _MACHINES else "none"
