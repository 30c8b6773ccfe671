"""Which socket backend runs, and why (docs/architecture.md, "Event loop").

Asio picks its socket reactor at compile time, so tagd is two executables built from the
same sources: tagd (epoll reactor) probes io_uring at start-up and, where it is usable and
not switched off, execs tagd-uring (sockets on io_uring) from its own directory, keeping
its pid, argv and environment; where io_uring is refused (a container's seccomp profile)
or off, tagd serves on epoll itself. Both say which runs in the log and in
tagd_io_uring_sockets.

Each test chooses its io_uring setting itself, so the module runs the same in ctest's
integration_io_uring_off.* run. A refused io_uring is the real thing: no_io_uring.py runs
tagd under a seccomp filter that fails the io_uring system calls with EPERM, as Docker's
default profile does.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

import harness
from harness import TagdTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
NO_IO_URING = os.path.join(HERE, "no_io_uring.py")
TAGD = os.path.realpath(harness.TAGD_BINARY)
TAGD_URING = os.path.join(os.path.dirname(TAGD), "tagd-uring")


def io_uring_usable() -> str | None:
    """None if this process may set up an io_uring, else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = (ctypes.c_char * 120)()  # struct io_uring_params, zeroed
    fd = libc.syscall(425, 4, params)  # io_uring_setup (the same number on x86_64 and aarch64)
    if fd < 0:
        return f"io_uring_setup: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


def build_id(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split("(build ", 1)[1].split(")", 1)[0]


def executable_of(t: harness.Tagd) -> str:
    return os.path.realpath(f"/proc/{t.proc.pid}/exe")


class IoBackendTest(TagdTestCase):

    def require_io_uring(self):
        why = io_uring_usable()
        if why:
            self.skipTest(f"this kernel or sandbox refuses io_uring ({why}): the io_uring side cannot run here")

    def assert_serves(self, t: harness.Tagd, key: str):
        data = os.urandom(300 * 1024)
        t.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        for _ in range(2):  # a miss that fills, then a hit
            self.assertEqual(t.client().get_object(Bucket=self.bucket, Key=key)["Body"].read(), data)

    def assert_warn(self, line: str):
        self.assertRegex(line, r"\bwarn(ing)?\b")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = harness.unique("iobackend")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    # ------------------------------------------------------------------ the default
    def test_default_runs_tagd_uring_in_the_same_process(self):
        self.require_io_uring()
        self.assertTrue(os.access(TAGD_URING, os.X_OK), f"{TAGD_URING} was not built next to {TAGD}")
        t = self.start_test_tagd(["--io-uring", "auto"])
        # exec keeps the pid: the pid the test started (and systemd's MAINPID) is the server.
        self.assertEqual(executable_of(t), os.path.realpath(TAGD_URING))
        line = t.wait_for_log(r"running \S+ for sockets on io_uring \(same pid\)")
        self.assertIn(TAGD_URING, line)
        t.wait_for_log(r"I/O backend: sockets and cache reads on io_uring")
        m = t.metrics()
        self.assertEqual(m["tagd_io_uring_sockets"], 1)
        self.assertEqual(m["tagd_io_uring_enabled"], 1)
        self.assert_serves(t, "default")
        self.assertEqual(t.metrics()["tagd_disk_io_uring"], 1)
        # Signals reach the new image: SIGHUP reloads, SIGTERM drains and exits 0.
        os.kill(t.proc.pid, signal.SIGHUP)
        t.wait_for_log(r"client keys reloaded")
        self.assertEqual(t.stop(), 0)

    # ------------------------------------------------------------------ off
    def test_io_uring_off_serves_on_epoll_without_exec(self):
        for how, args, env in (("flag", ["--io-uring", "off"], None),
                               ("environment", [], {"TAG_IO_URING": "off"})):
            with self.subTest(how=how):
                t = self.start_test_tagd(args, env=env)
                self.assertEqual(executable_of(t), TAGD)
                line = t.wait_for_log(r"io_uring unavailable \(disabled by configuration \(io_uring=off\)\); "
                                      r"sockets on the epoll reactor, cache reads on a pread thread pool")
                self.assert_warn(line)
                self.assertNotIn("for sockets on io_uring", t.log())
                m = t.metrics()
                self.assertEqual(m["tagd_io_uring_sockets"], 0)
                self.assertEqual(m["tagd_io_uring_enabled"], 0)
                self.assert_serves(t, f"off-{how}")
                self.assertEqual(t.metrics()["tagd_disk_io_uring"], 0)
                self.assertEqual(t.stop(), 0)

    def test_tagd_uring_itself_refuses_io_uring_off(self):
        t = harness.Tagd(self.workdir, self.moto.endpoint, (self.moto.access_key, self.moto.secret_key),
                         extra_args=["--io-uring", "off"])
        p = subprocess.run([TAGD_URING] + t.args[1:], env=t.env, capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode()
        self.assertEqual(p.returncode, 2, out)
        self.assertIn("tagd-uring serves sockets on io_uring only", out)
        self.assertIn("run tagd", out)

    # ------------------------------------------------------------------ refused (seccomp)
    def test_refused_io_uring_falls_back_to_epoll(self):
        t = harness.Tagd(self.workdir, self.moto.endpoint, (self.moto.access_key, self.moto.secret_key),
                         extra_args=["--io-uring", "auto"], name="seccomp")
        t.args = [sys.executable, NO_IO_URING] + t.args
        self.addCleanup(t.stop)
        t.start()
        self.assertEqual(executable_of(t), TAGD)
        line = t.wait_for_log(r"io_uring unavailable \(io_uring_queue_init failed: Operation not permitted\); "
                              r"sockets on the epoll reactor, cache reads on a pread thread pool")
        self.assert_warn(line)
        m = t.metrics()
        self.assertEqual(m["tagd_io_uring_sockets"], 0)
        self.assertEqual(m["tagd_io_uring_enabled"], 0)
        self.assert_serves(t, "refused")
        self.assertEqual(t.metrics()["tagd_disk_io_uring"], 0)
        # The container's HEALTHCHECK (`tagd healthcheck`) works under the same profile:
        # subcommands run in tagd itself, on epoll.
        env = dict(os.environ, TAG_HTTP_PORT=str(t.port))
        p = subprocess.run([sys.executable, NO_IO_URING, TAGD, "healthcheck"], env=env, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode())
        # tagd-uring cannot serve there, and says what to run instead.
        p = subprocess.run([sys.executable, NO_IO_URING, TAGD_URING] + t.args[3:], env=t.env, capture_output=True,
                           timeout=30)
        out = (p.stdout + p.stderr).decode()
        self.assertEqual(p.returncode, 2, out)
        self.assertIn("Operation not permitted", out)
        self.assertIn("run tagd", out)
        self.assertEqual(t.stop(), 0)

    # ------------------------------------------------------------------ the exec itself
    def copy_of_tagd(self) -> str:
        d = tempfile.mkdtemp(prefix="exec-", dir=self.workdir)
        path = os.path.join(d, "tagd")
        shutil.copy2(TAGD, path)
        return path

    def daemon_args(self, binary: str) -> list[str]:
        t = harness.Tagd(self.workdir, self.moto.endpoint, (self.moto.access_key, self.moto.secret_key),
                         extra_args=["--io-uring", "auto", "--cache-disabled"])
        return [binary] + t.args[1:]

    def test_exec_passes_argv_and_environment_to_the_sibling_next_to_tagd(self):
        self.require_io_uring()
        tagd = self.copy_of_tagd()
        marker = os.path.join(os.path.dirname(tagd), "sibling-ran")
        # A stand-in sibling that records how it was started.
        with open(os.path.join(os.path.dirname(tagd), "tagd-uring"), "w") as f:
            f.write('#!/bin/sh\n{ echo "pid=$$"; echo "mark=$TAGD_TEST_MARK"; echo "build=$TAGD_EXEC_BUILD"; '
                    f'printf "arg=%s\\n" "$0" "$@"; }} > "{marker}"\nexit 0\n')
        os.chmod(os.path.join(os.path.dirname(tagd), "tagd-uring"), 0o755)
        env = dict(os.environ, TAGD_TEST_MARK="kept")
        env.pop("TAG_IO_URING", None)

        # Subcommands never exec: they must work in any container.
        for sub in (["healthcheck"], ["stats"]):
            p = subprocess.run([tagd] + sub, env=dict(env, TAG_HTTP_PORT=str(harness.free_port())),
                               capture_output=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)  # nothing listens there
            self.assertFalse(os.path.exists(marker), f"`tagd {sub[0]}` ran the sibling")

        args = self.daemon_args(tagd)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = proc.communicate(timeout=30)[0].decode()
        self.assertEqual(proc.returncode, 0, out)  # the stand-in's exit status: tagd is gone
        with open(marker) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], f"pid={proc.pid}")
        self.assertEqual(lines[1], "mark=kept")
        self.assertEqual(lines[2], f"build={build_id(tagd)}")
        self.assertEqual([l.removeprefix("arg=") for l in lines[3:]],
                         [os.path.join(os.path.dirname(tagd), "tagd-uring")] + args[1:])

    def test_tagd_uring_refuses_a_tagd_of_another_build(self):
        # A half-upgraded install: the tagd that execs tagd-uring names a different build.
        self.require_io_uring()
        self.assertEqual(build_id(TAGD), build_id(TAGD_URING))
        args = [TAGD_URING] + self.daemon_args(TAGD)[1:]
        p = subprocess.run(args, env=dict(os.environ, TAGD_EXEC_BUILD="0.0.0-other-Release"), capture_output=True,
                           timeout=30)
        out = (p.stdout + p.stderr).decode()
        self.assertEqual(p.returncode, 2, out)
        self.assertIn(f"tagd-uring is build {build_id(TAGD_URING)} but the tagd that started it is build "
                      "0.0.0-other-Release", out)
        self.assertIn("--io-uring off", out)

    def test_a_config_file_readable_once_reaches_tagd_uring(self):
        # `--config <(...)`, /dev/stdin or a FIFO keep secrets off disk, and can be read
        # once: tagd reads its configuration before the exec and tagd-uring again after it.
        self.require_io_uring()
        fifo = os.path.join(tempfile.mkdtemp(prefix="fifo-", dir=self.workdir), "config.json")
        os.mkfifo(fifo)
        doc = json.dumps({"cache": {"disabled": True}}).encode()

        def feed():  # one writer, once: a second open for reading would wait forever
            with open(fifo, "wb") as f:
                f.write(doc)
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        t = self.start_test_tagd(["--io-uring", "auto", "--config", fifo])
        writer.join(timeout=30)
        self.assertEqual(executable_of(t), os.path.realpath(TAGD_URING))
        t.wait_for_log(r"I/O backend: sockets and cache reads on io_uring")
        # The file's setting is in force in tagd-uring: the cache is off.
        key = "fifo-config"
        t.client().put_object(Bucket=self.bucket, Key=key, Body=b"x" * 1000)
        for _ in range(2):
            r = t.client().get_object(Bucket=self.bucket, Key=key)
            self.assertEqual(r["Body"].read(), b"x" * 1000)
        m = t.metrics()
        self.assertEqual(m['tagd_cache_requests_total{result="disabled"}'], 2)
        self.assertEqual(m['tagd_cache_requests_total{result="hit"}'], 0)
        self.assertEqual(t.stop(), 0)

    def test_without_proc_tagd_serves_on_epoll(self):
        # A sandbox that hides /proc: tagd cannot find the tagd-uring installed beside it
        # (and PATH or argv[0] are not trusted for that), so it serves on epoll itself.
        self.require_io_uring()
        probe = subprocess.run(["unshare", "-Urm", "--", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /proc"],
                               capture_output=True, timeout=30) if shutil.which("unshare") else None
        if probe is None or probe.returncode != 0:
            self.skipTest("no unprivileged mount namespaces here (unshare -Urm + mount tmpfs over /proc refused)")
        t = harness.Tagd(self.workdir, self.moto.endpoint, (self.moto.access_key, self.moto.secret_key),
                         extra_args=["--io-uring", "auto"], name="noproc")
        t.args = ["unshare", "-Urm", "--", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs /proc && exec "$@"',
                  "sh"] + t.args
        self.addCleanup(t.stop)
        t.start()
        line = t.wait_for_log(r"I/O backend: sockets on the epoll reactor \(cannot find this executable to run "
                              r"tagd-uring beside it \(readlink /proc/self/exe")
        self.assert_warn(line)
        self.assertEqual(t.metrics()["tagd_io_uring_sockets"], 0)
        self.assert_serves(t, "noproc")
        self.assertEqual(t.stop(), 0)

    def test_missing_sibling_is_a_start_up_error(self):
        self.require_io_uring()
        tagd = self.copy_of_tagd()
        p = subprocess.run(self.daemon_args(tagd), capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode()
        self.assertEqual(p.returncode, 2, out)
        self.assertIn(os.path.join(os.path.dirname(tagd), "tagd-uring"), out)
        self.assertIn("No such file or directory", out)
        self.assertIn("--io-uring off", out)
        # The way out it names works: the lone tagd serves on epoll.
        t = harness.Tagd(self.workdir, self.moto.endpoint, (self.moto.access_key, self.moto.secret_key),
                         extra_args=["--io-uring", "off"], name="lone")
        t.args[0] = tagd
        self.addCleanup(t.stop)
        t.start()
        self.assertEqual(t.metrics()["tagd_io_uring_sockets"], 0)
        self.assert_serves(t, "lone")


if __name__ == "__main__":
    unittest.main()
