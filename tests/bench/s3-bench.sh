#!/usr/bin/env bash
# s3-bench.sh - backup and restore throughput of Lockbox through the local S3
# test server (moto, started by tests/support/s3-server).
#
#   tests/bench/s3-bench.sh FILE        # e.g. /tmp/lockbox-bench/data/day1-1024M.sql
#
# Fresh Object Lock bucket; `backup --stdin` of FILE, then a verified restore
# to a file (byte-compared with FILE). Prints wall seconds, MB/s (10^6 bytes of
# FILE per second) and peak RSS (/usr/bin/time %M) of each, and the number of
# S3 requests each made (lines of moto's request log). moto is an in-process
# Python server on the same CPUs: these are figures for Lockbox plus moto, not
# for a real S3 endpoint.
set -euo pipefail
IN=${1:?usage: s3-bench.sh FILE}
ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
(cd "$ROOT" && cargo build --release --quiet)
LB=${CARGO_TARGET_DIR:-$ROOT/target}/release/lockbox
W=$(mktemp -d /tmp/lockbox-s3-bench.XXXXXX)
URL=$("$ROOT/tests/support/s3-server" "$W/moto.pid")
trap 'kill "$(cat "$W/moto.pid")"; rm -rf "$W"' EXIT
VENV=${LOCKBOX_S3_VENV:-${LOCKBOX_CACHE:-$HOME/.cache/lockbox}/moto-venv}
"$VENV/bin/python" -c 'import boto3, sys
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="t",
    aws_secret_access_key="t").create_bucket(Bucket="bench", ObjectLockEnabledForBucket=True)' "$URL"
export AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
RCPT=$("$LB" keygen -o "$W/id.txt" 2>/dev/null)
printf 'state_dir = "%s"\n[repository]\nurl = "s3://bench/v"\nrecipients = ["%s"]\nlock_days = 1\n[repository.s3]\nendpoint = "%s"\npath_style = true\n' \
  "$W/state" "$RCPT" "$URL" > "$W/c.toml"
"$LB" -q -c "$W/c.toml" init
SIZE=$(stat -c %s "$IN")
reqs() { wc -l < "$W/moto.pid.log"; }
run() { # STEP CMD...
  local step=$1; shift
  local n0; n0=$(reqs)
  /usr/bin/time -f '%e %M' -o "$W/time" "$@"
  read -r secs rss < "$W/time"
  python3 -c 'import sys; s,sz,rss,req=float(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]); print(f"{sys.argv[1]:8} {s:7.2f} s {sz/s/1e6:8.1f} MB/s  peak RSS {rss/1024:6.1f} MiB  {req} requests")' \
    "$step" "$secs" "$SIZE" "$rss" "$(($(reqs) - n0))" >&2
}
echo "input: $IN ($SIZE bytes); moto at $URL"
run backup "$LB" -q -c "$W/c.toml" backup --json --stdin bench < "$IN" > "$W/b.json"
run restore "$LB" -q -c "$W/c.toml" restore latest --source bench --identity "$W/id.txt" --output "$W/out.bin"
cmp "$IN" "$W/out.bin" && echo "restore: byte-identical"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("chunks", d["chunks"], "stored bytes", d["added_bytes"])' "$W/b.json"
