#!/usr/bin/env bash
# Run ceph/s3-tests against moto directly and through tagd (in front of a fresh moto),
# then compare. Fetches nothing: you supply the s3-tests checkout. See README.md here.
#
# usage: run_s3tests.sh S3TESTS_DIR [options] [-- extra pytest args]
#   --target moto|tagd|both   what to run (default both; "both" also prints the diff)
#   --tagd PATH               tagd binary (default: <repo>/build/tagd)
#   --out DIR                 results directory (default /tmp/s3tests-results)
#   --tests PATHS             pytest paths inside the checkout
#                             (default s3tests/functional/test_s3.py)
#   --markers EXPR            pytest -m expression (default 'not fails_on_aws'; '' = none)
#   --test-timeout SECS       limit per test phase (default 60; 0 = none)
#   --total-timeout SECS      limit per pytest run (default 2400)
#   --log-level LEVEL         tagd log level (default debug)
#   --tagd-args "ARGS"        extra tagd flags, word-split (e.g. "--allow-anonymous true")
#   --no-isolate              keep s3-tests' one bucket prefix for the whole session (by
#                             default each test gets a fresh prefix, so a bucket an earlier
#                             test could not delete does not fail every later setup)
# env: PYTHON (default python3) must have boto3 and moto[server]; pytest, munch, isodate,
# pytz, dateutil are taken from it or, failing that, from Debian's python3-* packages in
# /usr/lib/python3/dist-packages (symlinked one by one, never that whole directory).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

[[ $# -ge 1 && -d "${1:-}" ]] || { sed -n '2,23p' "$0"; exit 2; }
s3tests="$(cd "$1" && pwd)"; shift
target=both
tagd_bin="$repo/build/tagd"
out=/tmp/s3tests-results
tests="s3tests/functional/test_s3.py"
markers="not fails_on_aws"
test_timeout=60
total_timeout=2400
log_level=debug
tagd_args=""
isolate=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --tagd) tagd_bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tests) tests="$2"; shift 2 ;;
    --markers) markers="$2"; shift 2 ;;
    --test-timeout) test_timeout="$2"; shift 2 ;;
    --total-timeout) total_timeout="$2"; shift 2 ;;
    --log-level) log_level="$2"; shift 2 ;;
    --tagd-args) tagd_args="$2"; shift 2 ;;
    --no-isolate) isolate=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$target" in moto|tagd|both) ;; *) echo "--target: moto|tagd|both" >&2; exit 2 ;; esac
PY="${PYTHON:-python3}"
[[ -f "$s3tests/s3tests/functional/__init__.py" ]] || { echo "$s3tests is not an s3-tests checkout" >&2; exit 2; }
if [[ "$target" != moto ]]; then
  [[ -x "$tagd_bin" ]] || { echo "no tagd binary at $tagd_bin (build it, or pass --tagd)" >&2; exit 2; }
  # Run a private copy so a concurrent rebuild cannot swap the binary mid-run.
  tagd_bin_src="$tagd_bin"
fi
mkdir -p "$out"

# ---- python path: the plugin, plus Debian packages the interpreter lacks ------------
pylib="$out/pylib"
rm -rf "$pylib"; mkdir -p "$pylib"
deb=/usr/lib/python3/dist-packages
link_deb() {  # link_deb module-name deb-entry... (only if $PY cannot import it already)
  local mod="$1"; shift
  "$PY" -c "import $mod" 2>/dev/null && return 0
  local e found=0
  for e in "$@"; do
    for p in "$deb"/$e; do [[ -e "$p" ]] && { ln -sfn "$p" "$pylib/$(basename "$p")"; found=1; }; done
  done
  [[ $found == 1 ]] || { echo "python module $mod missing (apt-get install python3-$mod?)" >&2; exit 2; }
}
if ! "$PY" -c "import pytest" 2>/dev/null; then
  link_deb pytest 'pytest' '_pytest' 'pytest-*.dist-info'
  link_deb pluggy 'pluggy' 'pluggy-*'
  link_deb iniconfig 'iniconfig' 'iniconfig-*'
  link_deb packaging 'packaging' 'packaging-*'
  link_deb py 'py' 'py.py' 'py-[0-9]*'
  link_deb attr 'attr' 'attrs' 'attrs-*'
fi
link_deb munch 'munch' 'munch-*'
link_deb isodate 'isodate' 'isodate-*'
link_deb pytz 'pytz' 'pytz-*'
link_deb six 'six.py' 'six-*'
link_deb dateutil 'dateutil' 'python_dateutil-*'
"$PY" -c "import boto3, moto.server" || { echo "$PY needs boto3 and moto[server]" >&2; exit 2; }
export PYTHONPATH="$here:$pylib${PYTHONPATH:+:$PYTHONPATH}"

# ---- helpers ---------------------------------------------------------------------------
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # wait_http URL PID NAME
  local i
  for i in $(seq 1 150); do
    kill -0 "$2" 2>/dev/null || { echo "$3 exited during start-up" >&2; return 1; }
    curl -s -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.2
  done
  echo "$3 did not start listening at $1" >&2; return 1
}

# s3-tests users (any keys work: moto does not check signatures; tagd gets them below)
MAIN_AK=0555b35654ad1656d804;  MAIN_SK='h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q=='
ALT_AK=NOPQRSTUVWXYZABCDEFG;   ALT_SK=nopqrstuvwxyzabcdefghijklmnabcdefghijklm
TEN_AK=HIJKLMNOPQRSTUVWXYZA;   TEN_SK=opqrstuvwxyzabcdefghijklmnopqrstuvwxyzab
IAM_AK=ABCDEFGHIJKLMNOPQRST;   IAM_SK=abcdefghijklmnopqrstuvwxyzabcdefghijklmn
ROOT_AK=AAAAAAAAAAAAAAAAAAaa;  ROOT_SK=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
AROOT_AK=BBBBBBBBBBBBBBBBBBbb; AROOT_SK=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

write_conf() {  # write_conf FILE PORT
  cat >"$1" <<EOF
[DEFAULT]
host = 127.0.0.1
port = $2
is_secure = False
ssl_verify = False

[fixtures]
bucket prefix = s3t-{random}-
iam name prefix = s3-tests-
iam path prefix = /s3-tests/

[s3 main]
display_name = M. Tester
user_id = testid
email = tester@ceph.com
api_name = default
access_key = $MAIN_AK
secret_key = $MAIN_SK

[s3 alt]
display_name = john.doe
email = john.doe@example.com
user_id = 56789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234
access_key = $ALT_AK
secret_key = $ALT_SK

[s3 tenant]
display_name = testx\$tenanteduser
user_id = testx\$9876543210abcdef0123456789abcdef0123456789abcdef0123456789abcdef
access_key = $TEN_AK
secret_key = $TEN_SK
email = tenanteduser@example.com
tenant = testx

[iam]
email = s3@example.com
user_id = 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
access_key = $IAM_AK
secret_key = $IAM_SK
display_name = youruseridhere

[iam root]
access_key = $ROOT_AK
secret_key = $ROOT_SK
user_id = RGW11111111111111111
email = account1@ceph.com

[iam alt root]
access_key = $AROOT_AK
secret_key = $AROOT_SK
user_id = RGW22222222222222222
email = account2@ceph.com
EOF
}

write_credentials() {  # every s3-tests user gets full access
  local f="$1" first=1 pair
  echo '{"keys": [' >"$f"
  for pair in "$MAIN_AK $MAIN_SK" "$ALT_AK $ALT_SK" "$TEN_AK $TEN_SK" "$IAM_AK $IAM_SK" \
              "$ROOT_AK $ROOT_SK" "$AROOT_AK $AROOT_SK"; do
    set -- $pair
    [[ $first == 1 ]] || echo ',' >>"$f"; first=0
    printf '  {"access_key_id": "%s", "secret_access_key": "%s", "grants": [{"bucket": "*", "actions": ["*"]}]}' \
      "$1" "$2" >>"$f"
  done
  printf '\n]}\n' >>"$f"
}

start_moto() {  # start_moto DIR -> sets moto_port
  moto_port=$(free_port)
  (cd "$1" && exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
     "$PY" -m moto.server -H 127.0.0.1 -p "$moto_port") >"$1/moto.log" 2>&1 &
  moto_pid=$!; pids+=("$moto_pid")
  wait_http "http://127.0.0.1:$moto_port/" "$moto_pid" moto
}

run_one() {  # run_one moto|tagd
  local t="$1" dir="$out/$1" port rc=0
  rm -rf "$dir"; mkdir -p "$dir"
  start_moto "$dir"
  port=$moto_port
  if [[ "$t" == tagd ]]; then
    cp "$tagd_bin_src" "$dir/tagd"
    # tagd execs the tagd-uring beside it for io_uring sockets and refuses to start without it.
    if [[ -x "$(dirname "$tagd_bin_src")/tagd-uring" ]]; then cp "$(dirname "$tagd_bin_src")/tagd-uring" "$dir/tagd-uring"; fi
    write_credentials "$dir/credentials.json"
    port=$(free_port)
    # Newer tagd has a disk cache that defaults to the shared /var/tmp/tagd-cache: give
    # this run a private, small one (removed afterwards) so runs neither collide with
    # other tagd processes nor see each other's blocks.
    local cache_args=""
    if "$dir/tagd" --help 2>/dev/null | grep -- '--cache-disk-path' >/dev/null; then
      cache_args="--cache-disk-path $dir/cache --cache-max-disk-usage 256MiB"
    fi
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$dir/tagd" --listen-address 127.0.0.1 --port "$port" \
      --upstream-endpoint "http://127.0.0.1:$moto_port" --upstream-region us-east-1 \
      --upstream-access-key-id test --upstream-secret-access-key test \
      --credentials-file "$dir/credentials.json" --log-level "$log_level" --access-log true $cache_args $tagd_args \
      >"$dir/tagd.log" 2>&1 &
    tagd_pid=$!; pids+=("$tagd_pid")
    wait_http "http://127.0.0.1:$port/" "$tagd_pid" tagd
  fi
  write_conf "$dir/s3tests.conf" "$port"
  : >"$dir/results.tsv"
  local margs=()
  [[ -n "$markers" ]] && margs=(-m "$markers")
  echo "== $t: pytest (isolate=$isolate) $tests ${markers:+-m '$markers'} on port $port (moto $moto_port); log $dir/pytest.log"
  (cd "$s3tests" && S3TEST_CONF="$dir/s3tests.conf" S3T_RESULTS="$dir/results.tsv" \
     S3T_TEST_TIMEOUT="$test_timeout" S3T_ISOLATE="$isolate" AWS_DEFAULT_REGION=us-east-1 \
     env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
     timeout -k 10 "$total_timeout" "$PY" -m pytest -p s3t_plugin -p no:cacheprovider \
       -o junit_family=xunit2 --junitxml="$dir/junit.xml" -rfE --tb=short \
       $tests "${margs[@]}" "${extra[@]}") >"$dir/pytest.log" 2>&1 || rc=$?
  [[ $rc == 124 || $rc == 137 ]] && echo "   WARNING: pytest hit --total-timeout ($total_timeout s); results are partial"
  cleanup
  rm -rf "$dir/cache"
  local o
  for o in passed failed error skipped; do
    awk -F'\t' -v o="$o" '$1==o {print $2}' "$dir/results.tsv" | sort >"$dir/$o.txt"
  done
  cp "$dir/passed.txt" "$out/passed-$t.txt"
  printf '   %s: passed %d  failed %d  error %d  skipped %d  (of %d run)\n' "$t" \
    "$(wc -l <"$dir/passed.txt")" "$(wc -l <"$dir/failed.txt")" "$(wc -l <"$dir/error.txt")" \
    "$(wc -l <"$dir/skipped.txt")" "$(wc -l <"$dir/results.tsv")"
}

[[ "$target" == moto || "$target" == both ]] && run_one moto
[[ "$target" == tagd || "$target" == both ]] && run_one tagd

if [[ -f "$out/passed-moto.txt" && -f "$out/passed-tagd.txt" ]]; then
  comm -23 "$out/passed-moto.txt" "$out/passed-tagd.txt" >"$out/regressions.txt"
  comm -13 "$out/passed-moto.txt" "$out/passed-tagd.txt" >"$out/tagd-only.txt"
  echo "== moto direct: $(wc -l <"$out/passed-moto.txt") passed; through tagd: $(wc -l <"$out/passed-tagd.txt") passed"
  echo "   pass on moto but not through tagd: $(wc -l <"$out/regressions.txt") ($out/regressions.txt)"
  echo "   pass through tagd but not on moto: $(wc -l <"$out/tagd-only.txt") ($out/tagd-only.txt)"
  [[ -s "$out/regressions.txt" ]] && exit 1
fi
exit 0
