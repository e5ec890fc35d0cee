"""The worker's sandbox, for processors that are not fully trusted (worker process).

Applied by `framepool.worker.main` when `sandbox = true`, first thing in a new worker: before its start
message is read, before the prewarm hook and before any processor module is imported. In order:

1. another user (`sandbox_user`): setgroups([]), setresgid, setresuid, then proof that root cannot be
   regained (setuid(0) must fail). Started as root, the worker loses every capability; the supervisor,
   the forkserver and the operator's root-only files (the config, the environment file) are out of reach.
   A supervisor that is not root can only "switch" to its own user.
2. PR_SET_NO_NEW_PRIVS: no set-uid binary or file capability gives the privileges back (and seccomp
   needs it).
3. PR_SET_DUMPABLE = 0 (after the uid change, which resets it): every sandboxed worker runs as the same
   user, and a dumpable one would let its neighbours open /proc/<pid>/fd (its rings), mem, environ.
4. A seccomp filter (classic BPF, built here, installed on every thread with SECCOMP_FILTER_FLAG_TSYNC:
   numpy's BLAS threads may already run) that answers EPERM to: ptrace, process_vm_readv/writev, kcmp, the
   pidfd calls, kill/tkill/tgkill/rt_(tg)sigqueueinfo unless the target is this worker (a process group,
   0 or -1 is refused: the supervisor may share the group), prlimit64 on another process, namespaces
   (setns, unshare, clone with CLONE_NEW*), mounts, bpf, perf_event_open, the keyring, userfaultfd,
   io_uring, module and kexec loading, reboot, swap, acct, syslog, iopl/ioperm, quotactl,
   open_by_handle_at and the terminal-injection ioctls TIOCSTI/TIOCLINUX. clone3 answers ENOSYS so that
   glibc falls back to clone, whose flags the filter can read. Any other ABI (i386 or x32 calls from this
   x86_64 process) is refused entirely; on another architecture the sandbox refuses to start.

The worker itself needs none of what is refused: the supervisor signals it (SIGUSR1 stack dump, SIGKILL),
not the reverse; the parent-death signal comes from the kernel; faulthandler and abort() re-raise with
tgkill on this process; rings and doorbells are memfds, eventfds and futexes it was handed. What a
processor loses with them: starting subprocesses that it signals (a child's signals are refused too: the
filter compares with this worker's pid).

Every step that fails raises SandboxError with a one-line reason: the worker reports it (WorkerFailed) and
exits with SANDBOX_FAILED, and the pool halts. A worker never runs unsandboxed when the sandbox was asked
for.

Why not libseccomp (python3-seccomp): a system package that is not on PyPI, for a filter of some sixty
instructions; and why not a container runtime: the workers are forked by the daemon, not started by one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import pwd
import struct

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ, JGE, JSET = 0x15, 0x35, 0x45  # BPF_JMP | BPF_JEQ/JGE/JSET | BPF_K
RET_K = 0x06
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (low half first)
OFF_NR, OFF_ARCH, OFF_ARG0, OFF_ARG1 = 0, 4, 16, 24

DENIED = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438, "process_madvise": 440,
    "process_mrelease": 448, "setns": 308, "unshare": 272, "mount": 165, "umount2": 166,
    "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "bpf": 321,
    "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
    "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103, "iopl": 172,
    "ioperm": 173, "quotactl": 179, "open_by_handle_at": 304,
}  # fmt: skip
# Allowed only when their first argument is this process.
SELF_ONLY = {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}
NR_PRLIMIT64, NR_CLONE, NR_CLONE3, NR_IOCTL = 302, 56, 435, 16
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


class SandboxError(Exception):
    """The sandbox was asked for and could not be set up; the message is the one-line reason."""


def apply(user: str) -> None:
    """Confine this worker (see the module docstring); SandboxError if any step fails."""
    if platform.machine() != "x86_64":
        raise SandboxError(f"sandbox: seccomp filter is built for x86_64, not {platform.machine()}")
    switch_user(user)
    libc = ctypes.CDLL(None, use_errno=True)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
    if libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        raise SandboxError("sandbox: no_new_privs did not stick")
    _prctl(libc, PR_SET_DUMPABLE, 0, "non-dumpable")
    install_filter(libc, os.getpid())


def switch_user(user: str) -> None:
    """Become `user` (name or uid) for good; nothing to do when this process already is that user."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise SandboxError(f"sandbox: sandbox_user {user!r} does not exist") from None
    uid, gid = entry.pw_uid, entry.pw_gid
    if uid == 0:
        raise SandboxError(f"sandbox: sandbox_user {user!r} is root")
    if os.getresuid() == (uid, uid, uid) and os.getresgid() == (gid, gid, gid):
        return
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except PermissionError:
        raise SandboxError(
            f"sandbox: cannot switch to sandbox_user {user!r} (uid {uid}): the supervisor runs as uid "
            f"{os.getuid()}, not root; run it as root or set sandbox_user to its own user"
        ) from None
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise SandboxError("sandbox: root could be regained after the user switch")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise SandboxError(f"sandbox: the switch to sandbox_user {user!r} is incomplete")
    os.environ["HOME"] = entry.pw_dir


def _prctl(libc: ctypes.CDLL, option: int, value: int, what: str) -> None:
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise SandboxError(f"sandbox: cannot set {what}: {os.strerror(ctypes.get_errno())}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(libc: ctypes.CDLL, pid: int) -> None:
    """Install the filter on every thread of this process."""
    program = build_filter(pid)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(SYS_SECCOMP),
        ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(fprog),
    )
    if result < 0:
        raise SandboxError(f"sandbox: cannot install the seccomp filter: {os.strerror(ctypes.get_errno())}")
    if result > 0:
        raise SandboxError(f"sandbox: seccomp filter not applied to thread {result}")


def build_filter(pid: int) -> bytes:
    """The classic BPF program (struct sock_filter[]), with `pid` as the only allowed signal target."""
    code: list[tuple[int, int, str | int, str | int]] = []  # (op, k, jump if true, jump if false)
    labels: dict[str, int] = {}

    def op(opcode: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        code.append((opcode, k, jt, jf))

    def label(name: str) -> None:
        labels[name] = len(code)

    op(LD_W_ABS, OFF_ARCH)
    op(JEQ, AUDIT_ARCH_X86_64, 0, "deny")
    op(LD_W_ABS, OFF_NR)
    op(JGE, X32_SYSCALL_BIT, "deny", 0)
    for nr in DENIED.values():
        op(JEQ, nr, "deny", 0)
    for nr in SELF_ONLY.values():
        op(JEQ, nr, "self", 0)
    op(JEQ, NR_PRLIMIT64, "prlimit", 0)
    op(JEQ, NR_CLONE, "clone", 0)
    op(JEQ, NR_CLONE3, "enosys", 0)
    op(JEQ, NR_IOCTL, "ioctl", 0)
    op(RET_K, RET_ALLOW)
    label("self")  # pid_t arguments: the kernel reads the low 32 bits only
    op(LD_W_ABS, OFF_ARG0)
    op(JEQ, pid, "allow", "deny")
    label("prlimit")
    op(LD_W_ABS, OFF_ARG0)
    op(JEQ, 0, "allow", 0)
    op(JEQ, pid, "allow", "deny")
    label("clone")
    op(LD_W_ABS, OFF_ARG0)
    op(JSET, CLONE_NEW_ANY, "deny", "allow")
    label("ioctl")  # the request is an unsigned int
    op(LD_W_ABS, OFF_ARG1)
    op(JEQ, TIOCSTI, "deny", 0)
    op(JEQ, TIOCLINUX, "deny", "allow")
    label("allow")
    op(RET_K, RET_ALLOW)
    label("deny")
    op(RET_K, RET_ERRNO | errno.EPERM)
    label("enosys")
    op(RET_K, RET_ERRNO | errno.ENOSYS)

    out = bytearray()
    for index, (opcode, k, jt, jf) in enumerate(code):
        out += struct.pack("=HBBI", opcode, _offset(jt, index, labels), _offset(jf, index, labels), k)
    return bytes(out)


def _offset(target: str | int, index: int, labels: dict[str, int]) -> int:
    """A jump as BPF encodes it: instructions to skip after this one (forward only, at most 255)."""
    if isinstance(target, int):
        return target
    skip = labels[target] - index - 1
    assert 0 <= skip <= 255, f"jump to {target} out of range"
    return skip
