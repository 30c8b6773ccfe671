#!/usr/bin/env python3
"""Runs a command the way a container's seccomp profile runs it when it refuses io_uring
(Docker's default since 25.0, containerd's RuntimeDefault): io_uring_setup, io_uring_enter
and io_uring_register fail with EPERM, every other system call works.

    python3 no_io_uring.py COMMAND [ARG...]

No root and no libseccomp needed: PR_SET_NO_NEW_PRIVS plus a classic BPF filter, then
exec. The filter stays with the process through every later exec (as in a container), so
a tagd that execs its sibling stays under it too. Exit status 127 when the filter cannot be
installed (an unknown architecture, or a kernel without seccomp).
"""
import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
BPF_LD_W_ABS = 0x20  # A = seccomp_data[k]
BPF_JEQ_K = 0x15  # pc += (A == k) ? jt : jf
BPF_RET_K = 0x06
# seccomp_data: int nr at offset 0, __u32 arch at offset 4.
OFFSET_NR, OFFSET_ARCH = 0, 4
# io_uring_setup, io_uring_enter, io_uring_register: the same numbers on both (the
# syscall table every architecture shares from 403 on).
IO_URING_SYSCALLS = (425, 426, 427)
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def program(arch: int) -> bytes:
    insns = [(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
             (BPF_JEQ_K, 1, 0, arch),
             (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),  # another ABI: not ours to filter
             (BPF_LD_W_ABS, 0, 0, OFFSET_NR)]
    for nr in IO_URING_SYSCALLS:
        insns += [(BPF_JEQ_K, 0, 1, nr), (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM)]
    insns.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def install() -> str | None:
    """None once the filter is on, else why not."""
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        return f"no seccomp filter for architecture {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}"
    code = program(arch)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        return f"PR_SET_SECCOMP: {os.strerror(ctypes.get_errno())}"
    return None


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    problem = install()
    if problem:
        print(f"no_io_uring: {problem}", file=sys.stderr)
        return 127
    os.execv(sys.argv[1], sys.argv[1:])
    return 127  # not reached: execv raises on failure


if __name__ == "__main__":
    sys.exit(main())
