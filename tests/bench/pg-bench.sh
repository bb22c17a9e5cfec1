#!/usr/bin/env bash
# pg_dump -> Lockbox against pg_dump -> file on a pgbench database, the
# second-day added bytes after a pgbench run, and restore --into against
# pg_restore from a file. Needs the local PostgreSQL (127.0.0.1:5432, user
# postgres, trust) and a release build. The bench database is dropped at exit.
#
#   SCALE=70 T=30 tests/bench/pg-bench.sh      # -s 70 is about 1 GiB
set -euo pipefail
SCALE=${SCALE:-70}
T=${T:-30}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${LOCKBOX:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lockbox}
D=$(mktemp -d)
DB=lbt_bench_$$
PG=(-h 127.0.0.1 -U postgres)
cleanup() {
  psql "${PG[@]}" -qc "drop database if exists $DB with (force)" -c "drop database if exists ${DB}_r with (force)" -c "drop database if exists ${DB}_f with (force)" || true
  rm -rf "$D"
}
trap cleanup EXIT
secs() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
now() { date +%s.%N; }

cd "$D"
"$B" keygen -o id.txt > rcpt 2>/dev/null
cat > lb.toml <<CFG
state_dir = "$D/state"
[repository]
url = "file://$D/repo"
recipients = ["$(cat rcpt)"]
lock_days = 1
[[source]]
name = "bench"
kind = "postgres"
host = "127.0.0.1"
port = 5432
user = "postgres"
database = "$DB"
CFG
"$B" -c lb.toml -q init
psql "${PG[@]}" -qc "create database $DB"
t0=$(now); pgbench "${PG[@]}" -i -q -s "$SCALE" "$DB" >/dev/null 2>&1; t1=$(now)
echo "pgbench -i -s $SCALE: $(secs "$t0" "$t1") s, database $(psql "${PG[@]}" -Atc "select pg_size_pretty(pg_database_size('$DB'))")"

t0=$(now); pg_dump "${PG[@]}" --format=custom --compress=0 -f dump.pgc "$DB"; t1=$(now)
echo "pg_dump -> file:              $(secs "$t0" "$t1") s ($(stat -c %s dump.pgc) bytes)"
t0=$(now); "$B" -c lb.toml -q backup --json bench > b1.json; t1=$(now)
echo "pg_dump -> lockbox, day 1:    $(secs "$t0" "$t1") s"
psql "${PG[@]}" -qc "create database ${DB}_f"
t0=$(now); pg_restore "${PG[@]}" --exit-on-error --single-transaction -d "${DB}_f" dump.pgc; t1=$(now)
echo "pg_restore from file:         $(secs "$t0" "$t1") s"
rm -f dump.pgc
t0=$(now); "$B" -c lb.toml -q restore latest --source bench -i id.txt --into "postgresql://postgres@127.0.0.1:5432/${DB}_r" --json > r1.json; t1=$(now)
echo "lockbox restore --into:       $(secs "$t0" "$t1") s"

pgbench "${PG[@]}" -c 2 -j 2 -T "$T" "$DB" 2>&1 | grep -E "actually processed"
t0=$(now); "$B" -c lb.toml -q backup --json bench > b2.json; t1=$(now)
echo "pg_dump -> lockbox, day 2:    $(secs "$t0" "$t1") s"
python3 - <<'PY'
import json
a, b, r = (json.load(open(f)) for f in ("b1.json", "b2.json", "r1.json"))
print("day 1: input %d, added %d bytes, %d chunks" % (a["input_bytes"], a["added_bytes"], a["chunks"]))
print("day 2: input %d, added %d bytes, %d of %d chunks new (ratio day2/day1 added %.3f)"
      % (b["input_bytes"], b["added_bytes"], b["new_chunks"], b["chunks"], b["added_bytes"] / a["added_bytes"]))
print("restore --into: verified restore %.2f s + load %.2f s" % (r["restore_seconds"], r["load_seconds"]))
PY
