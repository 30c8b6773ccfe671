"""Small helpers shared by the benchmark modules: logging, ports, /proc."""
import os
import socket
import statistics
import sys
import time

T0 = time.monotonic()


def log(msg):
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def free_port(host="127.0.0.1"):
    """A port that is free on host right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # the command name may contain spaces: split after the closing parenthesis
    return data[data.rindex(")") + 2:].split()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(_stat_fields(d)[1]) == pid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_seconds(pid, with_children=False):
    """utime+stime of pid (all its threads), plus its direct children if asked
    (nginx: master + workers)."""
    pids = [pid] + (children(pid) if with_children else [])
    total = 0
    for p in pids:
        try:
            f = _stat_fields(p)
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def proc_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm(pid):
    """Resets VmHWM (peak RSS) of pid; needs root or the same user."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.{nd}f}"
    return f"{x:.{max(nd, 2)}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def busy_fraction(t0, t1):
    db, dt = t1[0] - t0[0], t1[1] - t0[1]
    return db / dt if dt else None


def io_bytes(pid):
    """(read_bytes, write_bytes) that pid caused at the storage layer, from
    /proc/PID/io (O_DIRECT cache reads count here; page-cache hits do not)."""
    r = w = None
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    r = int(line.split()[1])
                elif line.startswith("write_bytes:"):
                    w = int(line.split()[1])
    except OSError:
        pass
    return r, w
