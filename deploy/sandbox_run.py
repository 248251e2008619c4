"""Run a crmsync command under the unit's syscall, W^X and socket-family rules, without systemd.

    sudo apt-get install python3-seccomp        # libseccomp's Python binding (Debian)
    python deploy/sandbox_run.py demo --contacts 200
    CREDENTIALS_DIRECTORY=... python deploy/sandbox_run.py run -c crmsync.toml

What crmsync.service sets and this reproduces in-process before running the command:
- SystemCallFilter=@system-service, SystemCallFilter=~@privileged @resources,
  SystemCallErrorNumber=EPERM (the lists come from `systemd-analyze syscall-filter`);
- MemoryDenyWriteExecute=yes, via the kernel's own PR_SET_MDWE (Linux >= 6.3);
- RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 (socket() of any other family fails).
It then proves each rule bites (a W+X mapping, setpriority(), an AF_NETLINK socket) and
runs the command. A command that works here will not be killed by these three settings
under systemd. Use it after adding a dependency with C code (anything that might JIT or
use ctypes callbacks would need MemoryDenyWriteExecute= removed).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import socket
import subprocess
import sys

sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-seccomp
try:
    import seccomp
except ImportError:
    sys.exit("sandbox_run: needs libseccomp's Python binding (apt-get install python3-seccomp)")

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


@functools.cache
def syscalls(group: str) -> frozenset[str]:
    """A systemd syscall group, nested groups expanded."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group],  # noqa: S603, S607
                         capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        name = line.strip()
        if name and not name.startswith("#"):
            names |= syscalls(name) if name.startswith("@") else {name}
    return frozenset(names)


def confine() -> int:
    allowed = set(syscalls("@system-service")) - syscalls("@privileged") - syscalls("@resources")
    allowed.discard("socket")
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for family in ALLOWED_FAMILIES:
        rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
    # systemd answers EAFNOSUPPORT for the other families (AF_NETLINK = 16, AF_PACKET = 17...)
    rules.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                   seccomp.Arg(0, seccomp.GT, max(ALLOWED_FAMILIES)))
    count = 1
    for name in sorted(allowed):
        try:
            rules.add_rule(seccomp.ALLOW, name)
            count += 1
        except (RuntimeError, ValueError):  # not a syscall on this architecture
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"sandbox_run: PR_SET_MDWE failed (kernel < 6.3?): errno {ctypes.get_errno()}")
    rules.load()  # PR_SET_NO_NEW_PRIVS is set by libseccomp
    return count


def prove() -> None:
    checks = {
        "W+X mapping": lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE
                                         | mmap.PROT_EXEC),
        "setpriority()": lambda: os.setpriority(os.PRIO_PROCESS, 0, 5),
        "AF_NETLINK socket": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),
    }
    for what, attempt in checks.items():
        try:
            attempt()
        except OSError as exc:
            print(f"sandbox_run: {what} refused as expected ({exc.strerror})", file=sys.stderr)
        else:
            sys.exit(f"sandbox_run: {what} was allowed: the sandbox is not in effect")


def main() -> int:
    count = confine()
    print(f"sandbox_run: {count} syscalls allowed, MDWE on", file=sys.stderr)
    prove()
    from crmsync.cli.main import main as crmsync_main

    return crmsync_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
