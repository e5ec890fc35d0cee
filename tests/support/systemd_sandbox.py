"""The sandbox systemd/framepool.service puts the daemon in, reproduced where PID 1 is not systemd (a wrapper
process that then execs the daemon: `python systemd_sandbox.py [--unprivileged] -- COMMAND...`).

What systemd 252 applies before it execs ExecStart, and how it is reproduced here, with libseccomp (which
systemd itself uses; libseccomp2 comes with systemd on Debian) loaded through ctypes:
- `User=`/`DynamicUser=`, `CapabilityBoundingSet=` (empty): `--unprivileged` drops every capability from
  the bounding set and runs as uid and gid 1000 of a new user namespace that maps them to the invoking user:
  the daemon is not root (which matters: SQLite, inside onnxruntime, calls fchown only as root, and fchown
  is in @privileged), holds no capability outside the namespace, and still reads the interpreter and the
  virtualenv wherever they are installed (a Python under /root, mode 700, is out of reach of `nobody`);
- `NoNewPrivileges=yes`: PR_SET_NO_NEW_PRIVS;
- `SystemCallFilter=@system-service` and `~@privileged`, `SystemCallArchitectures=native`: an allow-list
  filter of the calls `systemd-analyze syscall-filter` lists for @system-service (groups expanded) minus
  those of @privileged, on the native architecture only; anything else kills the process with SIGSYS, which
  is systemd's default action (no `SystemCallErrorNumber=` in the unit);
- `MemoryDenyWriteExecute=yes`: systemd 252's seccomp rules (EPERM for mmap asking for both PROT_WRITE
  and PROT_EXEC, mprotect and pkey_mprotect adding PROT_EXEC, shmat with SHM_EXEC), and the kernel's own
  PR_SET_MDWE (Linux 6.3, what newer systemd uses), so both variants hold;
- `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK`: socket() with any other family fails
  with EAFNOSUPPORT;
- `RestrictNamespaces=yes`: unshare and clone with a CLONE_NEW* flag and setns fail with EPERM; clone3,
  whose flags a filter cannot read, fails with ENOSYS so that the C library falls back to clone, as
  systemd arranges.
Not reproduced (they need a mount or user namespace set up by the service manager): ProtectSystem,
ProtectHome, PrivateTmp, PrivateDevices, PrivateUsers, ProtectKernel*, ProtectControlGroups, ProtectProc.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import re
import socket
import subprocess

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 4, 6, 7
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
ALLOWED_FAMILIES = {socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK}
AF_MAX = 46
CLONE_NEWUSER = 0x10000000
INSIDE_ID = 1000  # the daemon's uid and gid in its user namespace
CLONE_NEW = (0x80, 0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def errno_action(code: int) -> int:
    return 0x00050000 | code


class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class Filter:
    """One libseccomp filter context; `load` installs it on this process (filters stack: all must allow)."""

    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)

    def __init__(self, default_action: int) -> None:
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        self.ctx = ctypes.c_void_p(self.lib.seccomp_init(default_action))
        if not self.ctx:
            raise OSError("seccomp_init failed")

    def number(self, name: str) -> int:
        """The native syscall number, or negative when this architecture has no such call."""
        return int(self.lib.seccomp_syscall_resolve_name(name.encode()))

    def rule(self, action: int, name: str, *comparisons: tuple[int, int, int, int]) -> None:
        number = self.number(name)
        if number < 0:
            return
        array = (ArgCmp * max(1, len(comparisons)))(*(ArgCmp(*c) for c in comparisons))
        result = self.lib.seccomp_rule_add_array(self.ctx, action, number, len(comparisons), array)
        if result < 0:
            raise OSError(-result, f"seccomp rule for {name} refused")

    def load(self) -> None:
        result = self.lib.seccomp_load(self.ctx)
        if result < 0:
            raise OSError(-result, "seccomp_load failed")


def syscall_groups() -> dict[str, list[str]]:
    """Every group `systemd-analyze syscall-filter` prints, name → members (calls and nested @groups)."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] = []
    for line in listing.splitlines():
        if re.match(r"^@\S+$", line):
            members = groups.setdefault(line, [])
        elif line.startswith(" ") and not line.strip().startswith("#") and line.strip():
            members.append(line.strip())
        elif not line.startswith(" "):
            members = []  # the trailing "unlisted" section and blank lines belong to no group
    return groups


def expand(name: str, groups: dict[str, list[str]]) -> set[str]:
    if not name.startswith("@"):
        return {name}
    return set().union(*(expand(member, groups) for member in groups[name]))


def allowed_syscalls() -> set[str]:
    groups = syscall_groups()
    return expand("@system-service", groups) - expand("@privileged", groups)


def system_call_filter() -> Filter:
    allow = Filter(SCMP_ACT_KILL_PROCESS)  # libseccomp's filters also kill any non-native architecture
    for name in sorted(allowed_syscalls()):
        allow.rule(SCMP_ACT_ALLOW, name)
    return allow


def restrictions() -> Filter:
    """MemoryDenyWriteExecute, RestrictAddressFamilies and RestrictNamespaces, as systemd's rules."""
    deny = Filter(SCMP_ACT_ALLOW)
    eperm = errno_action(errno.EPERM)
    wx = PROT_WRITE | PROT_EXEC
    deny.rule(eperm, "mmap", (2, SCMP_CMP_MASKED_EQ, wx, wx))
    deny.rule(eperm, "mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    deny.rule(eperm, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    deny.rule(eperm, "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
    no_family = errno_action(errno.EAFNOSUPPORT)
    for family in sorted(set(range(AF_MAX)) - ALLOWED_FAMILIES):
        deny.rule(no_family, "socket", (0, SCMP_CMP_EQ, family, 0))
    deny.rule(no_family, "socket", (0, SCMP_CMP_GT, AF_MAX - 1, 0))
    for flag in CLONE_NEW:
        deny.rule(eperm, "unshare", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        deny.rule(eperm, "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
    deny.rule(eperm, "setns")
    deny.rule(errno_action(errno.ENOSYS), "clone3")
    return deny


def become_unprivileged() -> None:
    """CapabilityBoundingSet= (empty) and a user that is not root, as DynamicUser= runs the daemon (see the
    module docstring for why in a user namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    outside_uid, outside_gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
    with open("/proc/self/setgroups", "w") as setgroups:
        setgroups.write("deny")
    with open("/proc/self/uid_map", "w") as uid_map:
        uid_map.write(f"{INSIDE_ID} {outside_uid} 1")
    with open("/proc/self/gid_map", "w") as gid_map:
        gid_map.write(f"{INSIDE_ID} {outside_gid} 1")
    for capability in range(64):  # a new user namespace starts with a full bounding set: drop it there
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise OSError(ctypes.get_errno(), f"cannot drop capability {capability}")
    os.setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
    os.setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID)  # not root in the namespace: execve keeps no capability
    os.environ["HOME"] = "/"


def confine() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE (Linux 6.3 or later)")
    restrictions().load()
    system_call_filter().load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--unprivileged", action="store_true", help="run as a user that is not root (DynamicUser=yes)"
    )
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    if args.unprivileged:
        become_unprivileged()
    confine()
    os.execvp(args.command[0], args.command)


if __name__ == "__main__":
    main()
