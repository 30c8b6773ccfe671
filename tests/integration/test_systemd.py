"""tagd under systemd: the unit in deploy/systemd/ passes `systemd-analyze verify`, every
variable the environment file example sets is a real tagd setting, tagd speaks the
sd_notify protocol (READY=1 once listening, RELOADING=1/READY=1 around SIGHUP, STOPPING=1
on SIGTERM), and its log lines carry journald priorities when stderr is the journal."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import harness
from harness import TagdTestCase

UNIT = os.path.join(harness.SOURCE_DIR, "deploy", "systemd", "tagd.service")
ENV_EXAMPLE = os.path.join(harness.SOURCE_DIR, "deploy", "systemd", "tagd.env.example")


def unit_lines() -> list[str]:
    with open(UNIT) as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


class UnitFileTest(unittest.TestCase):

    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed")
        # verify checks that ExecStart's binary exists: the unit as shipped, with only its
        # binary path pointed at the tagd under test.
        with open(UNIT) as f:
            text = f.read()
        shipped = "ExecStart=/usr/local/bin/tagd\n"
        self.assertEqual(text.count(shipped), 1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tagd.service")
            with open(path, "w") as f:
                f.write(text.replace(shipped, f"ExecStart={os.path.abspath(harness.TAGD_BINARY)}\n"))
            p = subprocess.run([analyze, "verify", path], capture_output=True, timeout=60)
        out = (p.stdout + p.stderr).decode()
        # verify exits 0 on directives it ignores (a typo, a bad value): any line is a finding.
        self.assertEqual(p.returncode, 0, out)
        self.assertEqual(out.strip(), "", out)

    def test_the_unit_says_what_the_deployment_needs(self):
        lines = set(unit_lines())
        for required in ("Type=notify", "DynamicUser=yes", "CacheDirectory=tagd", "ProtectSystem=strict",
                         "NoNewPrivileges=yes", "PrivateTmp=yes", "Restart=on-failure",
                         "EnvironmentFile=-/etc/tagd/tagd.env", "ExecReload=/bin/kill -HUP $MAINPID",
                         "Environment=TAG_CACHE_DISK_PATH=%C/tagd"):
            self.assertIn(required, lines)
        self.assertTrue(any(re.fullmatch(r"LimitNOFILE=\d+", line) for line in lines))

    def test_env_example_names_only_real_settings(self):
        help_text = subprocess.run([harness.TAGD_BINARY, "--help"], capture_output=True, timeout=30,
                                   check=True).stdout.decode()
        known = set(re.findall(r"\((TAG_[A-Z0-9_]+)\)", help_text))
        self.assertIn("TAG_TLS_CERT_FILE", known)
        names = []
        with open(ENV_EXAMPLE) as f:
            for line in f:
                m = re.match(r"^#?(TAG_[A-Z0-9_]+)=", line.strip())
                if m:
                    names.append(m.group(1))
        self.assertGreater(len(names), 5)
        self.assertEqual([n for n in names if n not in known], [])


class NotifyTest(TagdTestCase):
    """sd_notify over a datagram socket the test binds, as systemd's NOTIFY_SOCKET."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-it-sd-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.moto = harness.Moto(cls.workdir, auth=False)
        cls.addClassCleanup(cls.moto.stop)
        cls.moto.start()

    def receive(self, sock: socket.socket, want: str, timeout: float = 10.0) -> list[str]:
        """Messages until one has the line `want`; every message, in order."""
        got = []
        sock.settimeout(timeout)
        while True:
            try:
                data = sock.recv(4096).decode()
            except socket.timeout:
                self.fail(f"no {want} from tagd; got {got}")
            got.append(data)
            if want in data.split("\n"):
                return got

    def test_ready_reloading_stopping(self):
        path = os.path.join(self.workdir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        tagd = self.start_test_tagd(["--cache-disabled"], env={"NOTIFY_SOCKET": path}, wait=False)
        ready = self.receive(sock, "READY=1")
        self.assertEqual(len(ready), 1, ready)
        self.assertIn(f"STATUS=serving on http://127.0.0.1:{tagd.port}", ready[0])
        # READY=1 comes once tagd accepts: a request right after it is served.
        self.assertEqual(harness.http_get(tagd.port, "/health")[0], 200)

        tagd.proc.send_signal(signal.SIGHUP)
        reload = self.receive(sock, "READY=1")
        self.assertIn("RELOADING=1", reload[0].split("\n"), reload)
        self.assertRegex(reload[0], r"MONOTONIC_USEC=\d+")
        self.assertIn("STATUS=serving; configuration reloaded", reload[-1])

        # A reload that fails still ends with READY=1, and says so in STATUS=.
        with open(tagd.credentials_path, "w") as f:
            f.write("{broken")
        tagd.proc.send_signal(signal.SIGHUP)
        failed = self.receive(sock, "READY=1")
        self.assertIn("RELOADING=1", failed[0].split("\n"))
        self.assertIn("previous configuration kept", failed[-1])

        tagd.proc.send_signal(signal.SIGTERM)
        stopping = self.receive(sock, "STOPPING=1")
        self.assertIn("STATUS=draining", stopping[-1])
        self.assertEqual(tagd.proc.wait(timeout=15), 0)

    def test_no_notify_socket_is_fine(self):
        tagd = self.start_test_tagd(["--cache-disabled"])
        self.assertEqual(harness.http_get(tagd.port, "/health")[0], 200)
        tagd.proc.send_signal(signal.SIGHUP)
        tagd.wait_for_log(r"client keys reloaded")
        self.assertEqual(tagd.stop(), 0)


class JournalLogTest(TagdTestCase):
    """With stderr being the stream JOURNAL_STREAM names, lines are '<priority>[logger] text'."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-it-journal-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.moto = harness.Moto(cls.workdir, auth=False)
        cls.addClassCleanup(cls.moto.stop)
        cls.moto.start()

    def start_with_journal_stream(self, matching: bool) -> harness.Tagd:
        tagd = harness.Tagd(self.workdir, self.moto.endpoint, None, extra_args=["--cache-disabled"],
                            credentials=None, name=f"journal-{int(matching)}")
        # The harness opens the log file with "wb" (same inode): stat it first.
        open(tagd.log_path, "wb").close()
        st = os.stat(tagd.log_path)
        tagd.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino + (0 if matching else 1)}"
        self.addCleanup(tagd.stop)
        return tagd.start()

    def test_priority_prefix_without_timestamps(self):
        tagd = self.start_with_journal_stream(True)
        self.assertEqual(harness.http_get(tagd.port, "/health")[0], 200)
        with open(tagd.credentials_path, "w") as f:
            f.write("{broken")
        tagd.proc.send_signal(signal.SIGHUP)
        tagd.wait_for_log(r"client keys reload refused")
        lines = tagd.log().splitlines()
        self.assertTrue(any(re.match(r"^<6>\[tagd\] tagd listening on http://", line) for line in lines), lines)
        self.assertTrue(any(re.match(r"^<6>\[access\] GET ", line) for line in lines), lines)
        self.assertTrue(any(re.match(r"^<3>\[tagd\] client keys reload refused", line) for line in lines), lines)
        self.assertFalse(any(re.match(r"^\d{4}-\d\d-\d\dT", line) for line in lines), lines)

    def test_another_stream_keeps_the_console_format(self):
        tagd = self.start_with_journal_stream(False)
        lines = tagd.log().splitlines()
        self.assertTrue(any(re.match(r"^\d{4}-\d\d-\d\dT\S+ info \[tagd\] tagd listening", line) for line in lines),
                        lines)


if __name__ == "__main__":
    unittest.main()
