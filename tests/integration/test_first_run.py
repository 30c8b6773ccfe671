"""The first run: every command `scripts/run.sh` (scripts/demo.py) prints must work.

Starts the demo on a free port as a new user would, reads what it prints, runs each
suggested command in the environment it suggests, and stops the demo by pid. Before
the fix, `aws s3 ls s3://demo/` failed with SignatureDoesNotMatch (the embedded moto's own
signature check refuses listings with a delimiter)."""
import os
import shlex
import signal
import subprocess
import sys
import time
import unittest

from harness import SOURCE_DIR, TAGD_BINARY, free_port, stop_process


class FirstRunTest(unittest.TestCase):
    def test_every_printed_command_works(self):
        port = free_port()
        demo = subprocess.Popen([sys.executable, os.path.join(SOURCE_DIR, "scripts", "demo.py"), "--tagd", TAGD_BINARY,
                                 "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.addCleanup(demo.stdout.close)
        self.addCleanup(stop_process, demo)
        lines, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Logs:"):
                break
        output = "\n".join(lines)
        self.assertTrue(any(ln.startswith("Logs:") for ln in lines), output)
        self.assertIn("X-Cache: HIT", output)

        start = lines.index("Use it with:")
        suggested = [ln.strip() for ln in lines[start + 1:] if ln.startswith("  ")]
        export = suggested[0]
        self.assertTrue(export.startswith("export "), output)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAG_"))}
        for assignment in shlex.split(export)[1:]:
            name, _, value = assignment.partition("=")
            env[name] = value
        self.assertEqual(env["AWS_ENDPOINT_URL"], f"http://127.0.0.1:{port}")
        commands = suggested[1:]
        self.assertGreaterEqual(len(commands), 3, output)
        for command in commands:
            with self.subTest(command=command):
                r = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, f"{command}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        demo.send_signal(signal.SIGTERM)
        self.assertEqual(demo.wait(timeout=30), 0)


if __name__ == "__main__":
    unittest.main()
