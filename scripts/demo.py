#!/usr/bin/env python3
"""The README's run command without an upstream: moto as the embedded upstream, tagd in
front of it on 127.0.0.1:8080, a short boto3 session through tagd, then tagd keeps serving
until Ctrl-C.

The embedded moto runs without its own signature check: tagd verifies every client
itself, and moto's check refuses valid listings that carry a delimiter (`aws s3 ls`), so
with it on the first command printed below would fail. (The integration tests keep moto's
check on where re-signing is what they test.)"""
import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_s3 import Moto, Tagd  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tagd", required=True)
    ap.add_argument("--port", type=int, default=int(os.environ.get("TAG_HTTP_PORT", "8080")))
    ap.add_argument("--no-wait", action="store_true", help="stop after the session (for scripts)")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="tagd-demo-")
    print(f"[demo] starting moto (local S3 on loopback; tagd verifies clients); logs in {workdir}")
    moto = Moto(verify_signatures=False, log_path=os.path.join(workdir, "moto.log"))
    client_key = ("TAGDDEMO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
    print(f"[demo] starting tagd on 127.0.0.1:{args.port} -> {moto.endpoint}")
    try:
        tagd = Tagd(args.tagd, moto, port=args.port, client_key=client_key,
                    log_path=os.path.join(workdir, "tagd.log"))
    except Exception as e:  # noqa: BLE001
        moto.stop()
        sys.exit(f"[demo] tagd did not start ({e}); is port {args.port} free? see {workdir}/tagd.log")

    try:
        s3 = boto3.client("s3", endpoint_url=tagd.endpoint, region_name="us-east-1",
                          aws_access_key_id=client_key[0], aws_secret_access_key=client_key[1],
                          config=botocore.config.Config(signature_version="s3v4"))
        print("[demo] session through tagd (boto3, SigV4 verified by tagd, re-signed for moto):")
        s3.create_bucket(Bucket="demo")
        print("  create_bucket demo            -> ok")
        body = b"hello from tagd\n" * 4096
        s3.put_object(Bucket="demo", Key="greeting.txt", Body=body)
        print(f"  put_object greeting.txt      -> {len(body)} bytes")
        for attempt in ("first", "second"):
            r = s3.get_object(Bucket="demo", Key="greeting.txt")
            got = r["Body"].read()
            x_cache = r["ResponseMetadata"]["HTTPHeaders"].get("x-cache")
            print(f"  get_object greeting.txt ({attempt}) -> {len(got)} bytes, identical={got == body}, "
                  f"X-Cache: {x_cache}")
        rng = s3.get_object(Bucket="demo", Key="greeting.txt", Range="bytes=0-15")["Body"].read()
        print(f"  get_object Range bytes=0-15  -> {rng!r}")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="demo").get("Contents", [])]
        print(f"  list_objects_v2              -> {keys}")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "greeting.txt"},
                                        ExpiresIn=300)
        with urllib.request.urlopen(url) as r:
            print(f"  presigned GET (urllib)       -> HTTP {r.status}, {len(r.read())} bytes")
        bad = boto3.client("s3", endpoint_url=tagd.endpoint, region_name="us-east-1",
                           aws_access_key_id=client_key[0], aws_secret_access_key="wrong-secret")
        try:
            bad.get_object(Bucket="demo", Key="greeting.txt")
        except botocore.exceptions.ClientError as e:
            err = e.response["Error"]
            print(f"  wrong secret                 -> HTTP {e.response['ResponseMetadata']['HTTPStatusCode']} "
                  f"{err['Code']} (refused locally, never forwarded)")
        with urllib.request.urlopen(tagd.endpoint + "/metrics") as r:
            lines = [ln for ln in r.read().decode().splitlines()
                     if ln.startswith(("tagd_requests_total", "tagd_auth_failures_total",
                                       "tagd_upstream_requests_total", "tagd_cache_requests_total"))]
        print("  metrics: " + ", ".join(lines))
        print()
        print(f"tagd is serving on {tagd.endpoint}  (upstream: embedded moto at {moto.endpoint})")
        print("Use it with:")
        print(f"  export AWS_ENDPOINT_URL={tagd.endpoint} AWS_ACCESS_KEY_ID={client_key[0]} "
              f"AWS_SECRET_ACCESS_KEY={client_key[1]} AWS_DEFAULT_REGION=us-east-1")
        print("  aws s3 ls s3://demo/")
        print("  aws s3 cp s3://demo/greeting.txt -")
        print("  echo hi | aws s3 cp - s3://demo/hi.txt")
        print(f"  python3 -c \"import boto3; print(boto3.client('s3').list_objects_v2(Bucket='demo', "
              f"Delimiter='/')['KeyCount'])\"")
        print(f"Logs: {workdir}/tagd.log   Stop: Ctrl-C", flush=True)
        sys.stdout.flush()
        if not args.no_wait:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    finally:
        print("\n[demo] stopping tagd and moto")
        tagd.stop()
        moto.stop()
        # The cache file is preallocated at its full 1 GiB; a demo run must not leave that
        # behind in /tmp every time it is started (the logs are small and may be wanted).
        shutil.rmtree(os.path.join(workdir, "cache"), ignore_errors=True)
        print(f"[demo] removed the demo's cache; logs kept in {workdir}")


if __name__ == "__main__":
    main()
