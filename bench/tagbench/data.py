"""Benchmark objects: files under DATA/www/<bucket>/<key> (what nginx serves),
optionally uploaded to a moto upstream, and lists of SigV4 presigned GET URLs
made with boto3 for any endpoint."""
import concurrent.futures as cf
import os
import random

from .util import log

BUCKET = "bench"
_POOL = None
MiB = 1 << 20


def _pool():
    global _POOL
    if _POOL is None:
        rnd = random.Random(20240601)
        _POOL = rnd.randbytes(9 * MiB)
    return _POOL


def _write_object(path, size, ident):
    """Pseudo-random bytes: a unique 64-byte header, then slices of a random
    pool at offsets that depend on the object (cheap to make; not
    compressible; no two objects alike)."""
    pool = _pool()
    head = (ident.encode() + b"\n").ljust(64, b"#")[:64]
    rnd = random.Random(ident)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        first = head[:min(size, 64)]
        f.write(first)
        left -= len(first)
        while left > 0:
            n = min(left, MiB)
            off = rnd.randrange(0, len(pool) - n)
            f.write(pool[off:off + n])
            left -= n
    os.rename(tmp, path)


class Dataset:
    """count objects of size bytes under prefix, in www/bench/prefix/NNNNNN."""

    def __init__(self, www, prefix, size, count):
        self.www = www
        self.prefix = prefix
        self.size = size
        self.count = count
        self.keys = [f"{prefix}/{i:06d}" for i in range(count)]

    def path(self, key):
        return os.path.join(self.www, BUCKET, key)

    def ensure(self):
        d = os.path.join(self.www, BUCKET, self.prefix)
        stamp = os.path.join(d, f".complete-{self.size}")
        have = 0
        if os.path.exists(stamp):
            with open(stamp) as f:
                have = int(f.read().strip() or 0)
        if have >= self.count:
            return self
        os.makedirs(d, exist_ok=True)
        log(f"writing {self.count} x {human(self.size)} objects to {d}")
        for k in self.keys[have:]:
            _write_object(self.path(k), self.size, k)
        with open(stamp, "w") as f:
            f.write(str(self.count))
        return self

    def total_bytes(self):
        return self.size * self.count

    def drop_from_page_cache(self):
        """Evict the files' clean pages (posix_fadvise DONTNEED; no root needed), so the
        next read of them comes from the disk."""
        for k in self.keys:
            drop_from_page_cache(self.path(k))


def drop_from_page_cache(path):
    """Evict one file's clean pages (posix_fadvise DONTNEED; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def big_object(www, size, name):
    """One large object bench/big/<name>-<size>; cold copies are hard links
    with new names (same bytes and ETag, a key no cache has seen)."""
    d = os.path.join(www, BUCKET, "big")
    os.makedirs(d, exist_ok=True)
    key = f"big/{name}-{size}"
    path = os.path.join(www, BUCKET, key)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        log(f"writing {human(size)} object {path}")
        _write_object(path, size, key)
    return key


def cold_alias(www, key, tag):
    """A new key for the same file (hard link), so every cold run reads a key
    that no cache has seen."""
    new_key = f"{key}.cold-{tag}"
    src = os.path.join(www, BUCKET, key)
    dst = os.path.join(www, BUCKET, new_key)
    if os.path.exists(dst):
        os.unlink(dst)
    os.link(src, dst)
    return new_key


def drop_alias(www, key):
    try:
        os.unlink(os.path.join(www, BUCKET, key))
    except OSError:
        pass


def human(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------- S3 side

def s3_client(endpoint, access_key, secret_key, region):
    import boto3
    from botocore.config import Config
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 5, "mode": "standard"},
                      max_pool_connections=64))


def upload(endpoint, creds, datasets, threads=16):
    """Creates the bucket on a moto upstream and puts every object of the
    given datasets (or keys) into it."""
    c = s3_client(endpoint, *creds)
    try:
        c.create_bucket(Bucket=BUCKET)
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass
    jobs = []
    for ds in datasets:
        jobs += [(ds.path(k), k) for k in ds.keys]
    log(f"uploading {len(jobs)} objects to {endpoint}")

    def put(job):
        path, key = job
        with open(path, "rb") as f:
            c.put_object(Bucket=BUCKET, Key=key, Body=f.read())

    with cf.ThreadPoolExecutor(threads) as ex:
        for _ in ex.map(put, jobs):
            pass


_presigners = {}


def presign(endpoint, creds, keys, expires=6 * 86400):
    """Full presigned GET URLs (SigV4 query auth) for keys at endpoint."""
    c = _presigners.get(endpoint)
    if c is None:
        c = _presigners[endpoint] = s3_client(endpoint, *creds)
    return [c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": k},
                                     ExpiresIn=expires) for k in keys]


def write_url_files(path_base, urls):
    """Writes path_base.urls (full URLs, for s3get) and path_base.targets
    (path?query, for wrk's replay.lua). Returns both paths."""
    full = path_base + ".urls"
    targets = path_base + ".targets"
    with open(full, "w") as f:
        f.write("\n".join(urls) + "\n")
    with open(targets, "w") as f:
        for u in urls:
            rest = u.split("://", 1)[1]
            f.write(rest[rest.index("/"):] + "\n")
    return full, targets


if __name__ == "__main__":
    # python3 -m tagbench.data upload ENDPOINT ACCESS_KEY SECRET REGION WWW PREFIX SIZE COUNT
    # (run inside the WAN namespace, so the upload does not cross the delay line)
    import sys
    _, cmd, endpoint, ak, sk, region, www, prefix, size, count = sys.argv
    assert cmd == "upload"
    upload(endpoint, (ak, sk, region), [Dataset(www, prefix, int(size), int(count))], threads=16)
