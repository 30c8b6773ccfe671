#!/usr/bin/env python3
"""Checks that tagd and tagd-uring each hold one socket reactor (the ctest `socket_variants`).

tagd is built with Asio's epoll reactor, tagd-uring with BOOST_ASIO_DISABLE_EPOLL (sockets
on io_uring); the sources that include Asio are compiled once per variant (the `asio`
lines of cmake/modules.txt). A source compiled once but linked into both would bring its
variant's Asio code along, and the linker would keep one copy of each inline function for
both: tagd-uring would then contain the epoll reactor (or tagd the io_uring socket
service). The symbol tables say so: each executable must define its own reactor's symbols
and none of the other's.

    python3 cmake/check_socket_variants.py TAGD TAGD_URING
"""
import subprocess
import sys

EPOLL = "boost::asio::detail::epoll_reactor"
URING_SOCKETS = "boost::asio::detail::io_uring_socket_service"


def symbols(path):
    out = subprocess.run(["nm", "-C", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def count(lines, needle):
    return sum(1 for line in lines if needle in line)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    tagd, tagd_uring = symbols(sys.argv[1]), symbols(sys.argv[2])
    found = {
        ("tagd", EPOLL): count(tagd, EPOLL),
        ("tagd", URING_SOCKETS): count(tagd, URING_SOCKETS),
        ("tagd-uring", EPOLL): count(tagd_uring, EPOLL),
        ("tagd-uring", URING_SOCKETS): count(tagd_uring, URING_SOCKETS),
    }
    for (exe, what), n in sorted(found.items()):
        print(f"{exe}: {n} symbol(s) of {what}")
    problems = []
    if found[("tagd", EPOLL)] == 0:
        problems.append("tagd defines no epoll reactor symbol (is it stripped, or built with DISABLE_EPOLL?)")
    if found[("tagd-uring", URING_SOCKETS)] == 0:
        problems.append("tagd-uring defines no io_uring socket service symbol (is it stripped, or an epoll build?)")
    if found[("tagd", URING_SOCKETS)]:
        problems.append("tagd holds tagd-uring's io_uring socket service: a source built for tagd-uring is "
                        "linked into tagd")
    if found[("tagd-uring", EPOLL)]:
        problems.append("tagd-uring holds the epoll reactor: a source that includes Asio is compiled once and "
                        "linked into both (add it to an `asio` line of cmake/modules.txt)")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print("socket_variants: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
