"""Local S3 pieces for the demo and the integration tests: moto on a free loopback port
with SigV4 checking on, and tagd in front of it. Processes are started by us and
stopped by pid."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_s3_user(endpoint, user="tagd"):
    """For a moto started with INITIAL_NO_AUTH_ACTION_COUNT=3: exactly three unauthenticated
    IAM calls create a user with full S3 access; returns its (access key, secret)."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


class Moto:
    """moto's S3 server. With verify_signatures, moto checks every request's SigV4
    signature after the first three (which create the IAM user whose key tagd uses)."""

    def __init__(self, verify_signatures=True, log_path=os.devnull):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if verify_signatures:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_http(self.endpoint + "/moto-api/", proc=self.proc)
        self.access_key, self.secret_key = ("test", "test")
        if verify_signatures:
            self.access_key, self.secret_key = self._bootstrap_user()

    def _bootstrap_user(self):
        return create_s3_user(self.endpoint)

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def stop(self):
        stop(self.proc)
        self._log.close()


class Tagd:
    def __init__(self, binary, upstream, port=None, credentials_file=None, client_key=None, extra_args=(),
                 log_path=os.devnull, env=None):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        args = [binary, "--port", str(self.port), "--upstream-endpoint", upstream.endpoint,
                "--upstream-region", "us-east-1", "--upstream-access-key-id", upstream.access_key,
                "--upstream-secret-access-key", upstream.secret_key]
        if credentials_file:
            args += ["--credentials-file", credentials_file]
        if client_key:
            args += ["--client-access-key-id", client_key[0], "--client-secret-access-key", client_key[1]]
        args += list(extra_args)
        if "--cache-disk-path" not in args:
            args += ["--cache-disk-path", os.path.join(os.path.dirname(os.path.abspath(log_path)), "cache"),
                     "--cache-max-disk-usage", "1GiB"]
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_http(self.endpoint + "/health", proc=self.proc)

    def stop(self):
        stop(self.proc)
        self._log.close()
