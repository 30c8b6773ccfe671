#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (deterministic; re-run after
changing a seed). Signatures are computed here, independently of tagd's own signer, with
AWS's documentation key, so the request_verifier, sigv2 and aws_chunked seeds carry real
signatures that tagd must accept; the block_header seeds use the on-disk format of
docs/architecture.md.

    python3 tests/fuzz/make_corpus.py
"""
import base64
import hashlib
import hmac
import os
import shutil
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20130524T000000Z"
DATE = AMZ_DATE[:8]
REGION = "us-east-1"
SCOPE = f"{DATE}/{REGION}/s3/aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SEED_SIGNATURE = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


# ---------------------------------------------------------------- checksums
# CRC32C (Castagnoli) as the integration harness computes it: one implementation.
from harness import crc32c  # noqa: E402


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum_value(name: str, data: bytes) -> str:
    if name == "crc32":
        return b64(struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF))
    if name == "crc32c":
        return b64(struct.pack(">I", crc32c(data)))
    if name == "sha1":
        return b64(hashlib.sha1(data).digest())
    if name == "sha256":
        return b64(hashlib.sha256(data).digest())
    raise ValueError(name)


# ---------------------------------------------------------------- SigV4
def uri_encode(text: str, encode_slash: bool) -> str:
    out = []
    for b in text.encode():
        c = chr(b)
        if c.isalnum() and b < 128 or c in "-_.~" or (c == "/" and not encode_slash):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key() -> bytes:
    k = hmac_sha256(("AWS4" + SECRET).encode(), DATE)
    k = hmac_sha256(k, REGION)
    k = hmac_sha256(k, "s3")
    return hmac_sha256(k, "aws4_request")


def canonical_query(params) -> str:
    enc = sorted((uri_encode(k, True), uri_encode(v, True)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in enc)


def sign_v4(method, path, params, headers, payload_hash, signed=None):
    """headers: list of (name, value). Returns the hex signature."""
    names = sorted({n.lower() for n, _ in headers} if signed is None else signed)
    lines = []
    for n in names:
        vals = [" ".join(v.split()) for hn, v in headers if hn.lower() == n]
        lines.append(f"{n}:{','.join(vals)}\n")
    creq = "\n".join([method, uri_encode(path, False), canonical_query(params), "".join(lines), ";".join(names),
                      payload_hash])
    sts = "\n".join(["AWS4-HMAC-SHA256", AMZ_DATE, SCOPE, hashlib.sha256(creq.encode()).hexdigest()])
    return hmac.new(signing_key(), sts.encode(), hashlib.sha256).hexdigest(), ";".join(names)


def header_signed_request(method, path, params, headers, body: bytes, payload_hash=None):
    payload_hash = payload_hash or hashlib.sha256(body).hexdigest()
    headers = headers + [("x-amz-content-sha256", payload_hash), ("x-amz-date", AMZ_DATE)]
    sig, names = sign_v4(method, path, params, headers, payload_hash)
    auth = f"AWS4-HMAC-SHA256 Credential={AKID}/{SCOPE}, SignedHeaders={names}, Signature={sig}"
    return headers + [("Authorization", auth)]


def chunk_sig(previous: str, data: bytes) -> str:
    sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, SCOPE, previous, EMPTY_SHA256,
                     hashlib.sha256(data).hexdigest()])
    return hmac.new(signing_key(), sts.encode(), hashlib.sha256).hexdigest()


def trailer_sig(previous: str, canonical: str) -> str:
    sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", AMZ_DATE, SCOPE, previous,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(signing_key(), sts.encode(), hashlib.sha256).hexdigest()


def signed_chunked_body(pieces, seed, trailers=None, signed_trailer=False) -> bytes:
    out = b""
    prev = seed
    for data in list(pieces) + [b""]:
        prev = chunk_sig(prev, data)
        out += b"%x;chunk-signature=%s\r\n" % (len(data), prev.encode())
        if data:
            out += data + b"\r\n"
    for name, value in trailers or []:
        out += f"{name}:{value}\r\n".encode()
    if signed_trailer:
        canonical = "".join(f"{n}:{v}\n" for n, v in sorted(trailers or []))
        out += f"x-amz-trailer-signature:{trailer_sig(prev, canonical)}\r\n".encode()
    return out + b"\r\n"


def unsigned_chunked_body(pieces, trailers=None, extension=b"") -> bytes:
    out = b""
    for data in pieces:
        out += b"%x%s\r\n" % (len(data), extension) + data + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers or []:
        out += f"{name}:{value}\r\n".encode()
    return out + b"\r\n"


# ---------------------------------------------------------------- SigV2
def sign_v2(string_to_sign: str) -> str:
    return b64(hmac.new(SECRET.encode(), string_to_sign.encode(), hashlib.sha1).digest())


# ---------------------------------------------------------------- block header
def hash_bytes(data: bytes) -> int:
    m = (1 << 64) - 1
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & m
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & m
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & m
    h ^= h >> 31
    return h


def block_header(key_hash: int, block: int, etag: bytes, payload: bytes) -> bytes:
    head = b"TAGB" + struct.pack("<HHQQII", 1, 128, key_hash, block, len(payload), crc32c(payload))
    head += struct.pack("<Q", hash_bytes(etag)) + etag[:64].ljust(64, b"\0") + b"\0" * 20
    assert len(head) == 124
    return head + struct.pack("<I", crc32c(head))


# ---------------------------------------------------------------- writers
def text_request(method, target, headers, body=b"") -> bytes:
    head = f"{method}\n{target}\n" + "".join(f"{n}: {v}\n" for n, v in headers) + "\n"
    return head.encode() + body


def write(target: str, name: str, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def request_verifier_seeds():
    t = "request_verifier"
    host = ("Host", "examplebucket.s3.amazonaws.com")
    # GET with a range, header-signed.
    h = header_signed_request("GET", "/test.txt", [], [host, ("Range", "bytes=0-9")], b"")
    write(t, "get_object", text_request("GET", "/test.txt", h))
    # ListObjectsV2 with a query.
    params = [("list-type", "2"), ("prefix", "photos/2024/"), ("max-keys", "100")]
    h = header_signed_request("GET", "/", params, [host], b"")
    write(t, "list_objects_v2", text_request("GET", "/?list-type=2&prefix=photos%2F2024%2F&max-keys=100", h))
    # PUT with a signed payload, Content-MD5 and a CRC32 checksum.
    body = b"Welcome to Amazon S3."
    extra = [host, ("Content-MD5", b64(hashlib.md5(body).digest())), ("Content-Length", str(len(body))),
             ("x-amz-checksum-crc32", checksum_value("crc32", body)), ("x-amz-storage-class", "REDUCED_REDUNDANCY")]
    h = header_signed_request("PUT", "/test$file.text", [], extra, body)
    write(t, "put_object_signed_payload", text_request("PUT", "/test%24file.text", h, body))
    # PUT with UNSIGNED-PAYLOAD and a SHA-256 checksum header.
    body = b"unsigned body bytes\n" * 4
    extra = [host, ("Content-Length", str(len(body))), ("x-amz-checksum-sha256", checksum_value("sha256", body))]
    h = header_signed_request("PUT", "/logs/app.log", [], extra, body, payload_hash="UNSIGNED-PAYLOAD")
    write(t, "put_object_unsigned_payload", text_request("PUT", "/logs/app.log", h, body))
    # Presigned GET (query auth).
    params = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{AKID}/{SCOPE}"),
              ("X-Amz-Date", AMZ_DATE), ("X-Amz-Expires", "86400"), ("X-Amz-SignedHeaders", "host")]
    sig, _ = sign_v4("GET", "/test.txt", params, [host], "UNSIGNED-PAYLOAD", signed=["host"])
    query = canonical_query(params) + "&X-Amz-Signature=" + sig
    write(t, "presigned_get", text_request("GET", "/test.txt?" + query, [host]))
    # aws-chunked, signed chunks.
    pieces = [b"a" * 300, b"b" * 70]
    decoded = b"".join(pieces)
    base = [host, ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", str(len(decoded)))]
    length = len(signed_chunked_body(pieces, SEED_SIGNATURE))
    h = header_signed_request("PUT", "/examplefile.txt", [], base + [("Content-Length", str(length))], b"",
                              payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    seed = h[-1][1].rsplit("Signature=", 1)[1]
    write(t, "aws_chunked_signed", text_request("PUT", "/examplefile.txt", h, signed_chunked_body(pieces, seed)))
    # aws-chunked, signed chunks and a signed CRC32C trailer.
    trailers = [("x-amz-checksum-crc32c", checksum_value("crc32c", decoded))]
    length = len(signed_chunked_body(pieces, SEED_SIGNATURE, trailers, True))
    h = header_signed_request("PUT", "/examplefile.txt", [],
                              base + [("x-amz-trailer", "x-amz-checksum-crc32c"), ("Content-Length", str(length))], b"",
                              payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
    seed = h[-1][1].rsplit("Signature=", 1)[1]
    write(t, "aws_chunked_signed_trailer",
          text_request("PUT", "/examplefile.txt", h, signed_chunked_body(pieces, seed, trailers, True)))
    # aws-chunked, unsigned payload with a CRC32 trailer (what the newest SDKs send).
    trailers = [("x-amz-checksum-crc32", checksum_value("crc32", decoded))]
    length = len(unsigned_chunked_body(pieces, trailers))
    h = header_signed_request("PUT", "/examplefile.txt", [],
                              base + [("x-amz-trailer", "x-amz-checksum-crc32"), ("Content-Length", str(length))], b"",
                              payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    write(t, "aws_chunked_unsigned_trailer",
          text_request("PUT", "/examplefile.txt", h, unsigned_chunked_body(pieces, trailers)))
    # DeleteObjects with Content-MD5.
    body = delete_xml(["photos/2024/cat.jpg", "notes & drafts/todo.txt"]).encode()
    extra = [host, ("Content-MD5", b64(hashlib.md5(body).digest())), ("Content-Length", str(len(body)))]
    h = header_signed_request("POST", "/", [("delete", "")], extra, body)
    write(t, "delete_objects", text_request("POST", "/?delete", h, body))
    # SigV2 header form (Date header, no x-amz-*).
    date = "Tue, 27 Mar 2007 19:36:42 +0000"
    sts = "\n".join(["GET", "", "", date, "/examplebucket/photos/puppy.jpg"])
    h = [host, ("Date", date), ("Authorization", f"AWS {AKID}:{sign_v2(sts)}")]
    write(t, "sigv2_header_get", text_request("GET", "/photos/puppy.jpg", h))
    # SigV2 query form (what boto3's generate_presigned_url produces against an endpoint).
    expires = "1175139620"
    sts = "\n".join(["GET", "", "", expires, "/examplebucket/photos/puppy.jpg"])
    sig = uri_encode(sign_v2(sts), True)
    write(t, "sigv2_presigned_get",
          text_request("GET", f"/photos/puppy.jpg?AWSAccessKeyId={AKID}&Expires={expires}&Signature={sig}", [host]))
    # Anonymous (allowed by the harness when the method line starts with 'A').
    write(t, "anonymous", text_request("ANON", "/public/readme.txt", [("Host", "localhost")]))


def sigv2_seeds():
    t = "sigv2"
    date = "Tue, 27 Mar 2007 19:36:42 +0000"
    sts = "\n".join(["GET", "", "", date, "/johnsmith/photos/puppy.jpg"])
    write(t, "header_get", f"GET\n/photos/puppy.jpg\njohnsmith\nHost: johnsmith.s3.amazonaws.com\nDate: {date}\n"
                           f"Authorization: AWS {AKID}:{sign_v2(sts)}\n\n")
    amz = [("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"), ("x-amz-meta-reviewedby", "joe@example.com")]
    canon = "".join(f"{n}:{v}\n" for n, v in sorted(amz))
    md5 = "4gJE4saaMU4BqNR0kLY+lw=="
    sts = "\n".join(["PUT", md5, "image/jpeg", ""]) + "\n" + canon + "/johnsmith/photos/puppy.jpg?acl"
    headers = "".join(f"{n}: {v}\n" for n, v in amz)
    write(t, "header_put_amz_headers",
          f"PUT\n/johnsmith/photos/puppy.jpg?acl\n\nHost: s3.amazonaws.com\nContent-MD5: {md5}\n"
          f"Content-Type: image/jpeg\n{headers}Authorization: AWS {AKID}:{sign_v2(sts)}\n\n")
    expires = "1175139620"
    sts = "\n".join(["GET", "", "", expires, "/johnsmith/photos/puppy.jpg"])
    write(t, "presigned_get",
          f"GET\n/johnsmith/photos/puppy.jpg?AWSAccessKeyId={AKID}&Expires={expires}"
          f"&Signature={uri_encode(sign_v2(sts), True)}\n\nHost: s3.amazonaws.com\n\n")
    sts = "\n".join(["GET", "", "", expires, "/johnsmith/"])
    write(t, "presigned_list",
          f"GET\n/johnsmith/?prefix=photos%2F&max-keys=10&AWSAccessKeyId={AKID}&Expires={expires}"
          f"&Signature={uri_encode(sign_v2(sts), True)}\n\nHost: s3.amazonaws.com\n\n")


def sigv4_parse_seeds():
    t = "sigv4_parse"
    sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    write(t, "authorization", f"AWS4-HMAC-SHA256 Credential={AKID}/{SCOPE},SignedHeaders=host;range;"
                              f"x-amz-content-sha256;x-amz-date,Signature={sig}")
    write(t, "authorization_spaces", f"AWS4-HMAC-SHA256 Signature={sig}, Credential={AKID}/{SCOPE}, "
                                     f"SignedHeaders=content-md5;host;x-amz-date")
    write(t, "presigned_query", f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKID}%2F{DATE}%2F{REGION}"
                                f"%2Fs3%2Faws4_request&X-Amz-Date={AMZ_DATE}&X-Amz-Expires=86400"
                                f"&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")
    write(t, "amz_date", AMZ_DATE)
    write(t, "http_date_imf", "Fri, 24 May 2013 00:00:00 GMT")
    write(t, "http_date_rfc850", "Friday, 24-May-13 00:00:00 GMT")
    write(t, "http_date_asctime", "Fri May 24 00:00:00 2013")


def request_target_seeds():
    t = "request_target"
    write(t, "path_style_get", "GET\nlocalhost:8080\n/examplebucket/photos/2024/cat%20one.jpg?versionId=3HL4kq"
                               "tJlcpXroDTDmJ%2Bq3W.A&x-id=GetObject\nlocalhost\n\nHost: localhost:8080\n\n")
    write(t, "virtual_hosted", "HEAD\nexamplebucket.localhost:8080\n/dir/file%2Bname.txt\nlocalhost\n\n"
                               "Host: examplebucket.localhost:8080\n\n")
    write(t, "list_v2", "GET\nlocalhost\n/examplebucket?list-type=2&prefix=logs%2F2024%2F&delimiter=%2F"
                        "&max-keys=100&continuation-token=abc\nlocalhost\n\n\n")
    write(t, "list_buckets", "GET\nlocalhost\n/\nlocalhost\n\n\n")
    write(t, "copy_object", "PUT\nlocalhost\n/dst-bucket/copied/key.bin\nlocalhost\n/src-bucket/source%20key.bin"
                            "?versionId=abc\nx-amz-copy-source: /src-bucket/source%20key.bin?versionId=abc\n"
                            "x-amz-metadata-directive: COPY\n\n")
    write(t, "multipart_create", "POST\nlocalhost\n/bucket/big.bin?uploads\nlocalhost\n\n\n")
    write(t, "multipart_part", "PUT\nlocalhost\n/bucket/big.bin?partNumber=2&uploadId=VXBsb2FkIElE\nlocalhost\n\n"
                               "Content-Length: 5242880\n\n")
    write(t, "delete_objects", "POST\nlocalhost\n/bucket?delete\nlocalhost\n\nContent-MD5: 1B2M2Y8AsgTpgAmY7PhCfg==\n\n")
    write(t, "presigned_v4", f"GET\nexamplebucket.s3.amazonaws.com\n/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                             f"&X-Amz-Credential={AKID}%2F{DATE}%2F{REGION}%2Fs3%2Faws4_request&X-Amz-Date="
                             f"{AMZ_DATE}&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                             f"aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404\n"
                             f"s3.amazonaws.com\n\n\n")
    write(t, "presigned_v2", "GET\nlocalhost\n/bucket/key?AWSAccessKeyId=AKID&Expires=1700000000&Signature=ab%2Bc%3D"
                             "\nlocalhost\n\n\n")
    write(t, "tagging", "DELETE\nlocalhost\n/bucket/key?tagging\nlocalhost\n\n\n")
    write(t, "bucket_policy", "PUT\nlocalhost\n/bucket?policy\nlocalhost\n\n\n")


def delete_xml(keys, quiet=False, version=None):
    out = '<?xml version="1.0" encoding="UTF-8"?>\n<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n'
    if quiet:
        out += "  <Quiet>true</Quiet>\n"
    for k in keys:
        k = k.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        out += f"  <Object>\n    <Key>{k}</Key>\n"
        if version:
            out += f"    <VersionId>{version}</VersionId>\n"
        out += "  </Object>\n"
    return out + "</Delete>\n"


def delete_objects_seeds():
    t = "delete_objects"
    write(t, "two_keys", delete_xml(["photos/2024/cat.jpg", "photos/2024/dog.jpg"]))
    write(t, "quiet_versioned", delete_xml(["sample1.txt"], quiet=True, version="OYcLXagmS.WaD..oyH4KRguB95_YhLs7"))
    write(t, "entities", delete_xml(["a & b <c> \"d\" 'e'.txt"]).replace("'e'", "&apos;e&apos;")
          .replace("\"d\"", "&quot;d&quot;") + "")
    write(t, "char_refs", "<Delete><Object><Key>caf&#xE9;/&#128512;/x&#38;y</Key></Object></Delete>")
    write(t, "minimal", "<Delete><Object><Key>k</Key></Object></Delete>")
    write(t, "etag_fields", "<Delete><Object><Key>k</Key><ETag>\"abc\"</ETag><LastModifiedTime>2024-01-01T00:00:00Z"
                            "</LastModifiedTime><Size>10</Size></Object></Delete>")


def credentials_seeds():
    t = "credentials"
    write(t, "two_keys", """{"keys":[
  {"access_key_id":"READER","secret_access_key":"reader-secret","grants":[
    {"bucket":"data","prefix":"public/","actions":["read","list"]}]},
  {"access_key_id":"ADMIN","secret_access_key":"admin-secret","grants":[{"bucket":"*","actions":["*"]}]}]}
""")
    write(t, "writer", """{"keys":[{"access_key_id":"AKIAWRITER0000000001","secret_access_key":"wJalrXUtnFEMI/K7MDENG",
  "grants":[{"bucket":"uploads","prefix":"jobs/","actions":["write","read","delete"]},
            {"bucket":"models","actions":["read","list"]}]}]}
""")
    write(t, "empty", '{"keys":[]}')


def config_seeds():
    t = "config"
    with open(os.path.join(HERE, "..", "..", "config", "tagd.example.json"), "rb") as f:
        write(t, "example", f.read())
    write(t, "cache", """{
  "listen": {"port": 9000, "threads": 2},
  "upstream": {"endpoint": "http://127.0.0.1:5000", "region": "us-east-1", "retries": 0,
               "access_key_id": "AKID", "secret_access_key": "SECRET"},
  "cache": {"disk_path": "/var/tmp/tagd-cache", "max_disk_usage": "4GiB", "ttl": "24h",
            "block_size": "1MiB", "memory_size": "256MiB"},
  "log": {"level": "debug", "format": "json"}
}
""")
    write(t, "flags", "--port\n9000\n--upstream-endpoint=http://127.0.0.1:9\n--cache-ttl\n90m\n"
                      "--cache-block-size=512KiB\n--log-level\nwarn\n--upstream-tls-verify\n")


def aws_chunked_seeds():
    t = "aws_chunked"
    pieces = [b"hello world, ", b"aws-chunked"]
    data = b"".join(pieces)

    def seed(mode, body, cuts=()):
        return bytes([mode, len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + body

    write(t, "signed", seed(1, signed_chunked_body(pieces, SEED_SIGNATURE)))
    write(t, "signed_split", seed(1, signed_chunked_body(pieces, SEED_SIGNATURE), (5, 90, 91)))
    write(t, "signed_trailer_crc32c",
          seed(1 | 2 | (2 << 2), signed_chunked_body(pieces, SEED_SIGNATURE,
                                                     [("x-amz-checksum-crc32c", checksum_value("crc32c", data))],
                                                     True)))
    write(t, "unsigned_plain", seed(0, unsigned_chunked_body(pieces)))
    write(t, "unsigned_crc32", seed(1 << 2, unsigned_chunked_body(pieces, [("x-amz-checksum-crc32",
                                                                             checksum_value("crc32", data))]), (3,)))
    write(t, "unsigned_sha1", seed(3 << 2, unsigned_chunked_body([data], [("x-amz-checksum-sha1",
                                                                            checksum_value("sha1", data))])))
    write(t, "unsigned_sha256_ext",
          seed(4 << 2, unsigned_chunked_body(pieces, [("x-amz-checksum-sha256", checksum_value("sha256", data))],
                                             extension=b";ext=1")))
    write(t, "unsigned_two_trailers",
          seed(5 << 2, unsigned_chunked_body(pieces, [("x-amz-checksum-crc32", checksum_value("crc32", data)),
                                                      ("x-amz-meta-note", "fuzz seed")])))


def block_header_seeds():
    t = "block_header"
    payload = bytes(range(256)) * 4
    etag = b'"9b2cf535f27731c974343645a3985328"'
    key_hash = hash_bytes(b"examplebucket\0photos/cat.jpg\0")
    header = block_header(key_hash, 3, etag, payload)
    expected = struct.pack("<QQI", key_hash, 3, 1 << 20) + etag
    write(t, "raw_valid", b"\x00" + header + expected)
    long_etag = b'"' + b"d41d8cd98f00b204e9800998ecf8427e-" * 3 + b'"'
    header = block_header(7, 0, long_etag, b"")
    write(t, "raw_valid_long_etag_empty_payload", b"\x00" + header + struct.pack("<QQI", 7, 0, 1 << 20) + long_etag)
    write(t, "raw_wrong_block", b"\x00" + block_header(key_hash, 4, etag, payload) + expected)
    write(t, "round_trip", b"\x01" + struct.pack("<QQ", key_hash, 3) + b"\x20" + etag + payload[:64])


def http_semantics_seeds():
    # FuzzedDataProvider input: any bytes work; a few with readable header text help.
    t = "http_semantics"
    write(t, "range_and_dates", b"\x01bytes=0-1023\\W/\"etag\"\\\"etag\"\\Fri, 24 May 2013 00:00:00 GMT\\"
                                b"Fri, 24 May 2013 00:00:00 GMT\\\"etag\"\\Thu, 23 May 2013 00:00:00 GMT\\"
                                b"max-age=3600, must-revalidate\\bytes 0-1023/4096\\Fri, 24 May 2013 00:00:00 GMT\\"
                                b"no-cache\\\x0f\x00\x10\x00\x00\x00")
    write(t, "suffix_range", b"\x00bytes=-500\\*\\\"abc\"\\Sunday, 06-Nov-94 08:49:37 GMT\\"
                             b"Sun Nov  6 08:49:37 1994\\\"abc\"\\Sun, 06 Nov 1994 08:49:37 GMT\\"
                             b"s-maxage=60, private\\Wed, 21 Oct 2015 07:28:00 GMT\\"
                             b"Wed, 21 Oct 2015 07:27:00 GMT\\no-cache\\\xff\x01versionId\\3HL4kq\\")


def http_framing_seeds():
    t = "http_framing"
    # First byte: where the head is split between the two parser.put() calls.
    write(t, "get", b"\x20GET /examplebucket/test.txt HTTP/1.1\r\nHost: localhost:8080\r\nRange: bytes=0-9\r\n"
                    b"x-amz-date: 20130524T000000Z\r\n\r\n")
    write(t, "put_content_length", b"\x10PUT /bucket/key HTTP/1.1\r\nHost: localhost\r\nContent-Length: 21\r\n"
                                   b"Expect: 100-continue\r\n\r\n")
    write(t, "put_chunked", b"\x40PUT /bucket/key HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                            b"Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER"
                            b"\r\nx-amz-trailer: x-amz-checksum-crc32\r\n\r\n")
    write(t, "te_and_cl", b"\x05POST /bucket?delete HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
    write(t, "te_gzip_chunked", b"\x30PUT /b/k HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    write(t, "http10_te", b"\x00PUT /b/k HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")


def cache_meta_seeds():
    t = "cache_meta"
    import json
    meta = {"v": 2, "size": 1048577, "etag": '"9b2cf535f27731c974343645a3985328"',
            "last_modified": "Wed, 12 Oct 2009 17:50:00 GMT",
            "headers": [["Content-Type", "application/octet-stream"], ["x-amz-meta-owner", "ml-team"],
                        ["Cache-Control", "max-age=3600"]],
            "fetched_at_ms": 1764892800000, "fresh_until_ms": 1764979200000, "block_size": 1048576,
            "checksums": [["x-amz-checksum-crc32", "DUoRhQ=="], ["x-amz-checksum-type", "FULL_OBJECT"]],
            "checksums_known": True}
    write(t, "record_v2", b"\x00" + json.dumps(meta).encode())
    meta["v"] = 1
    write(t, "record_v1", b"\x00" + json.dumps(meta).encode())
    write(t, "fields", b"\x01" + bytes(range(32)) + b'"etag-1"\\Wed, 12 Oct 2009 17:50:00 GMT\\Content-Type\\text/plain')


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    request_target_seeds()
    sigv4_parse_seeds()
    request_verifier_seeds()
    aws_chunked_seeds()
    http_semantics_seeds()
    delete_objects_seeds()
    credentials_seeds()
    block_header_seeds()
    config_seeds()
    sigv2_seeds()
    http_framing_seeds()
    cache_meta_seeds()


if __name__ == "__main__":
    main()
