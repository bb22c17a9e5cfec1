#!/usr/bin/env bash
# peers.sh - Lockbox side by side with restic, borg and rustic, one run, one table.
#
#   tests/bench/peers.sh                                   # full run (~20 min on 2 cores)
#   SIZE_MIB=64 REPS=1 REF_REPS=1 PG_SCALE=2 PG_T=5 tests/bench/peers.sh   # smoke (~2 min)
#   RSS_GIB=20 tests/bench/peers.sh                        # memory check only (below)
#
# Inputs (INPUTS, default "realistic scattered pgbench"), each a day-1 and a day-2 file:
#   realistic  gen_dump.py day 1 (SIZE_MIB) and day 2 with --hot-pct 10: 1 % of rows
#              rewritten, all in the newest 10 % of each table, plus 1 % appended
#   scattered  the same day 1; day 2 with the 1 % rewrites scattered through every table
#   pgbench    pg_dump --format=custom --compress=0 (what Lockbox's postgres source runs)
#              of `pgbench -i -s PG_SCALE`, then of the same database after
#              `pgbench -c 2 -j 2 -T PG_T`; needs PostgreSQL on 127.0.0.1:5432 (user
#              postgres, trust); skipped with a note when it is not there
# Dumps are cached in $WORK/data (regenerated only when missing).
#
# Per input, tool and repetition, in a fresh local repository: backup day 1 from
# stdin; backup day 2 from stdin (seconds, bytes added to the repository = growth
# of `du -sb`); restore day 2 to stdout into a file, sha256-checked against the
# input; wall seconds and peak RSS (/usr/bin/time %M) of each. Comparable
# settings: zstd level 3, encryption on, local repository. Tools interleave per
# repetition so noise spreads over all of them. Peers that are not installed are
# skipped (restic, borg: Debian's packages; rustic: `cargo install rustic-rs`).
#
# References on the day-1 file: `zstd -3 -T2 | age -r` and `age -d | zstd -d`
# (plus cat, zstd -T1/-T2, age alone), REF_REPS times.
#
# S3 (S3=1, default): Lockbox and restic against the same local moto server
# (tests/support/s3-server; a fresh server per tool and repetition so its
# memory does not grow), backup of day 1 and restore, seconds and requests/GiB
# (lines of moto's request log), S3_REPS times (default REPS).
#
# RSS_GIB=N: instead of the above, stream N GiB of generated dump (fresh rows,
# no dedup) into `lockbox backup --stdin`, then restore it to a sha256 pipe;
# reports wall seconds and peak RSS of each (the generator shares the CPUs, so
# MiB/s is not Lockbox's throughput there).
#
# Output: markdown on stdout and in $OUT_MD (default $WORK/results.md); raw TSVs
# and logs in $WORK/run (wiped by the next run). The machine is shared and
# noisy: compare the ratios of one run, not absolute times across runs.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
WORK=${WORK:-/tmp/lockbox-peers}
REPS=${REPS:-3}
REF_REPS=${REF_REPS:-$REPS}
S3=${S3:-1}
S3_REPS=${S3_REPS:-$REPS}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
SEED=${SEED:-42}
HOT_PCT=${HOT_PCT:-10}
PG_SCALE=${PG_SCALE:-70}
PG_T=${PG_T:-60}
INPUTS=${INPUTS:-"realistic scattered pgbench"}
PEERS=${PEERS:-"lockbox restic borg rustic"}
RSS_GIB=${RSS_GIB:-}
OUT_MD=${OUT_MD:-$WORK/results.md}
export BENCH_PASSWORD=${BENCH_PASSWORD:-bench-password-not-a-secret}

DATA=$WORK/data
RUN=$WORK/run
RES=$RUN/timings.tsv   # tool input phase rep rc wall user sys maxrss_kb bytes
SIZES=$RUN/sizes.tsv   # tool input rep repo_after_day1 repo_after_day2 sha256_verdict
S3RES=$RUN/s3.tsv      # tool phase rep rc wall maxrss_kb requests bytes verdict
META=$RUN/meta.tsv

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'peers: FAILED: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }

for t in python3 /usr/bin/time timeout sha256sum du zstd age age-keygen git cargo; do
  have "$t" || die "missing $t (apt-get install -y python3 time zstd age restic borgbackup)"
done

log "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet -p lockbox) || die "cargo build failed"
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
LB=$TARGET/release/lockbox
[[ -x $LB ]] || die "no binary at $LB"
export LB

mkdir -p "$DATA"
[[ -d $RUN ]] && chmod -R u+w "$RUN" && rm -rf "$RUN"
mkdir -p "$RUN/logs" "$RUN/tmp" "$RUN/repos"
: > "$RES"; : > "$SIZES"; : > "$S3RES"; : > "$META"

# keep every tool's config, cache and keys inside $RUN, never in ~
export XDG_CONFIG_HOME=$RUN/home/config XDG_CACHE_HOME=$RUN/home/cache
export BORG_BASE_DIR=$RUN/home/borg RESTIC_CACHE_DIR=$RUN/home/cache/restic
export RUSTIC_CACHE_DIR=$RUN/home/cache/rustic RUSTIC_NO_PROGRESS=true
export RESTIC_PASSWORD=$BENCH_PASSWORD BORG_PASSPHRASE=$BENCH_PASSWORD RUSTIC_PASSWORD=$BENCH_PASSWORD
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# One identity for every Lockbox repository of the run (restore needs it).
LB_ID=$RUN/lockbox-identity.txt
LB_RCPT=$("$LB" keygen -o "$LB_ID" 2>/dev/null) || die "lockbox keygen failed"
export LB_ID LB_RCPT

# ------------------------------------------------------------------ the RSS check
if [[ -n $RSS_GIB ]]; then
  meta mode rss
  meta host "$(nproc) cpu ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
  meta "version:lockbox" "$("$LB" --version) @ $(git -C "$ROOT" rev-parse --short HEAD)"
  meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
  for gib in 1 "$RSS_GIB"; do
    R=$RUN/repos/rss-$gib
    mkdir -p "$R"
    printf 'state_dir = "%s"\n[repository]\nurl = "file://%s"\nrecipients = ["%s"]\nlock_days = 1\n' \
      "$R/state" "$R/repo" "$LB_RCPT" > "$R/lockbox.toml"
    "$LB" -q -c "$R/lockbox.toml" init || die "init failed"
    log "streaming $gib GiB of generated dump into lockbox backup --stdin"
    /usr/bin/time -f '%e %M' -o "$RUN/tmp/time" bash -c \
      'set -o pipefail; python3 "$1" --size-mib "$2" --seed 7 | tee >(sha256sum | cut -d" " -f1 > "$4") |
         "$LB" -q -c "$3" backup --json --stdin bench > "$5"' \
      _ "$HERE/gen_dump.py" "$((gib * 1024))" "$R/lockbox.toml" "$R/in.sha256" "$R/summary.json" \
      2> "$RUN/logs/rss-$gib.backup.log" || die "backup of $gib GiB failed: $(tail -n 3 "$RUN/logs/rss-$gib.backup.log")"
    read -r w m < "$RUN/tmp/time"
    n=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["input_bytes"])' "$R/summary.json")
    printf 'lockbox\trss-%s\tbackup\t1\t0\t%s\t0\t0\t%s\t%s\n' "$gib" "$w" "$m" "$n" >> "$RES"
    log "restoring it (verified) into sha256sum"
    /usr/bin/time -f '%e %M' -o "$RUN/tmp/time" bash -c \
      '"$LB" -q -c "$1" restore latest --source bench -i "$LB_ID" -o - | sha256sum | cut -d" " -f1 > "$2"' \
      _ "$R/lockbox.toml" "$R/out.sha256" 2> "$RUN/logs/rss-$gib.restore.log" ||
      die "restore of $gib GiB failed: $(tail -n 3 "$RUN/logs/rss-$gib.restore.log")"
    read -r w m < "$RUN/tmp/time"
    ok=MISMATCH; cmp -s "$R/in.sha256" "$R/out.sha256" && ok=OK
    printf 'lockbox\trss-%s\trestore\t1\t0\t%s\t0\t0\t%s\t%s\n' "$gib" "$w" "$m" "$n" >> "$RES"
    printf 'lockbox\trss-%s\t1\t%s\t%s\t%s\n' "$gib" "$(du -sb "$R/repo" | cut -f1)" NA "$ok" >> "$SIZES"
    chmod -R u+w "$R" && rm -rf "$R"
  done
  meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 "$HERE/summarize.py" "$RUN" | tee "$OUT_MD"
  exit 0
fi

# ------------------------------------------------------------------ inputs
# gen OUT ARGS... : a generated dump, cached with its sha256 and statistics.
gen() {
  local out=$1; shift
  [[ -s $out && -s $out.sha256 && -s $out.stats ]] && return 0
  log "generating $out"
  python3 "$HERE/gen_dump.py" --size-mib "$SIZE_MIB" --seed "$SEED" "$@" -o "$out.part" \
    2> "$out.stats.part" || { cat "$out.stats.part" >&2; die "gen_dump.py $*"; }
  sha256sum "$out.part" | cut -d' ' -f1 > "$out.sha256"
  mv "$out.stats.part" "$out.stats"
  mv "$out.part" "$out"
}

PG=(-h 127.0.0.1 -p 5432 -U postgres)
PGDB=lbt_peers_bench
pg_inputs() {  # the two pgbench dumps, cached per scale and duration
  local d1=$DATA/pgbench-s$PG_SCALE-day1.dump d2=$DATA/pgbench-s$PG_SCALE-t$PG_T-day2.dump
  PG_D1=$d1 PG_D2=$d2
  [[ -s $d1 && -s $d2 && -s $d1.sha256 && -s $d2.sha256 ]] && return 0
  have pgbench && have pg_dump || { log "pgbench/pg_dump not installed"; return 1; }
  psql "${PG[@]}" -Atqc 'select 1' >/dev/null 2>&1 || { log "PostgreSQL on 127.0.0.1:5432 not reachable"; return 1; }
  trap 'psql "${PG[@]}" -qc "drop database if exists $PGDB with (force)" >/dev/null 2>&1' EXIT
  psql "${PG[@]}" -qc "drop database if exists $PGDB with (force)" -c "create database $PGDB" || return 1
  log "pgbench -i -s $PG_SCALE"
  pgbench "${PG[@]}" -i -q -s "$PG_SCALE" "$PGDB" > "$RUN/logs/pgbench-init.log" 2>&1 || return 1
  log "pg_dump day 1"
  pg_dump "${PG[@]}" --format=custom --compress=0 -f "$d1.part" "$PGDB" || return 1
  log "pgbench -T $PG_T"
  pgbench "${PG[@]}" -c 2 -j 2 -T "$PG_T" "$PGDB" > "$RUN/logs/pgbench-run.log" 2>&1 || return 1
  grep -E 'number of transactions actually processed' "$RUN/logs/pgbench-run.log" | sed 's/^/  pgbench: /' >&2
  log "pg_dump day 2"
  pg_dump "${PG[@]}" --format=custom --compress=0 -f "$d2.part" "$PGDB" || return 1
  psql "${PG[@]}" -qc "drop database if exists $PGDB with (force)"
  trap - EXIT
  for f in "$d1" "$d2"; do sha256sum "$f.part" | cut -d' ' -f1 > "$f.sha256"; mv "$f.part" "$f"; done
  grep -E 'actually processed' "$RUN/logs/pgbench-run.log" > "$d2.stats" || :
}

declare -A DAY1 DAY2
for input in $INPUTS; do
  case $input in
    realistic)
      DAY1[$input]=$DATA/day1-${SIZE_MIB}M-s$SEED.sql
      DAY2[$input]=$DATA/day2-${SIZE_MIB}M-s$SEED-hot$HOT_PCT.sql
      gen "${DAY1[$input]}" --day 1
      gen "${DAY2[$input]}" --day 2 --hot-pct "$HOT_PCT" ;;
    scattered)
      DAY1[$input]=$DATA/day1-${SIZE_MIB}M-s$SEED.sql
      DAY2[$input]=$DATA/day2-${SIZE_MIB}M-s$SEED-scattered.sql
      gen "${DAY1[$input]}" --day 1
      gen "${DAY2[$input]}" --day 2 ;;
    pgbench)
      if pg_inputs; then DAY1[$input]=$PG_D1 DAY2[$input]=$PG_D2
      else log "pgbench input skipped"; meta "skipped:pgbench" "PostgreSQL or pgbench not available"; fi ;;
    *) die "unknown input $input (realistic, scattered, pgbench)" ;;
  esac
done
ACTIVE_INPUTS=()
for input in $INPUTS; do
  [[ -n ${DAY1[$input]:-} ]] || continue
  ACTIVE_INPUTS+=("$input")
  meta "input:$input" "$(stat -c %s "${DAY1[$input]}") $(stat -c %s "${DAY2[$input]}") $(basename "${DAY1[$input]}") $(basename "${DAY2[$input]}")"
  for d in "${DAY1[$input]}" "${DAY2[$input]}"; do
    [[ -s $d.stats ]] && meta "stats:$(basename "$d")" "$(tr '\n' ' ' < "$d.stats")"
  done
done
((${#ACTIVE_INPUTS[@]})) || die "no input could be prepared"
D1=${DAY1[${ACTIVE_INPUTS[0]}]}   # the references' file
export D1

# ------------------------------------------------------------------ tools
if grep -qw sha_ni /proc/cpuinfo; then BORG_ENC=${BORG_ENC:-repokey}; else BORG_ENC=${BORG_ENC:-repokey-blake2}; fi
declare -A INIT BACKUP RESTORE VERSION SETTINGS DATADIR
# $REPO: a fresh directory per tool and repetition; $SNAP: day1 or day2.
INIT[lockbox]='mkdir -p "$REPO" && printf "state_dir = \"%s\"\n[repository]\nurl = \"file://%s\"\nrecipients = [\"%s\"]\nlock_days = 1\n" "$REPO/state" "$REPO/repo" "$LB_RCPT" > "$REPO/lockbox.toml" && "$LB" -q -c "$REPO/lockbox.toml" init'
BACKUP[lockbox]='"$LB" -q -c "$REPO/lockbox.toml" backup --stdin bench'
RESTORE[lockbox]='"$LB" -q -c "$REPO/lockbox.toml" restore latest --source bench -i "$LB_ID" -o -'
VERSION[lockbox]='echo "$("$LB" --version) @ $(git -C "'"$ROOT"'" rev-parse --short HEAD)$(git -C "'"$ROOT"'" diff --quiet HEAD || echo " (+ uncommitted changes)")"'
SETTINGS[lockbox]='defaults: zstd 3, age (X25519, ChaCha20-Poly1305), FastCDC 512K/2M/8M, delta chunks on; restore verifies every chunk and the whole stream'
DATADIR[lockbox]=repo   # the repository only: state_dir (catalog, base cache) is local

INIT[restic]='restic -r "$REPO" init --repository-version 2'
BACKUP[restic]='restic -r "$REPO" backup --compression auto --stdin --stdin-filename db.sql --host bench --tag "$SNAP"'
RESTORE[restic]='restic -r "$REPO" dump --tag "$SNAP" latest /db.sql'
VERSION[restic]='restic version'
SETTINGS[restic]='repo v2, --compression auto (Go zstd "default", about level 3), AES-256-CTR + Poly1305-AES, CDC 512K/1M/8M'

INIT[borg]="borg init -e $BORG_ENC \"\$REPO\""
BACKUP[borg]='borg create --compression zstd,3 --stdin-name db.sql "$REPO::$SNAP" -'
RESTORE[borg]='borg extract --stdout "$REPO::$SNAP"'
VERSION[borg]='borg --version'
SETTINGS[borg]="-e $BORG_ENC, --compression zstd,3, buzhash CDC 512K/2M/8M (defaults)"

INIT[rustic]='rustic -r "$REPO" init --set-compression 3'
# --force: rustic 0.11.4 otherwise takes the parent snapshot's tree for a
# stdin source and silently records yesterday's content (rustic_core PR #536).
BACKUP[rustic]='rustic -r "$REPO" backup --force --host bench --tag "$SNAP" --stdin-filename db.sql -'
RESTORE[rustic]='rustic -r "$REPO" dump --filter-tags "$SNAP" latest:db.sql'
VERSION[rustic]='rustic --version'
SETTINGS[rustic]='--set-compression 3 (C zstd), AES-256-CTR + Poly1305-AES, CDC 512K/1M/8M, --force'

ACTIVE=()
for p in $PEERS; do
  [[ -n ${BACKUP[$p]:-} ]] || die "unknown tool $p"
  if [[ $p == lockbox ]] || have "$p"; then
    ACTIVE+=("$p")
    meta "version:$p" "$(bash -c "${VERSION[$p]}" 2>&1 | head -n1)"
    meta "settings:$p" "${SETTINGS[$p]}"
    meta "cmd:$p" "init: ${INIT[$p]} | backup: ${BACKUP[$p]} < dayN | restore: ${RESTORE[$p]} > out"
  else
    log "$p not installed: skipped"
    meta "missing:$p" "$p not found in PATH"
  fi
done

# ------------------------------------------------------------------ timing
# timed TOOL INPUT PHASE REP STDIN STDOUT BYTES CMD -> one line in $RES
timed() {
  local tool=$1 input=$2 phase=$3 rep=$4 in=$5 out=$6 bytes=$7 cmd=$8
  local tf=$RUN/tmp/time.txt lg=$RUN/logs/$tool.$input.$phase.$rep.log
  sync
  local t0=$EPOCHREALTIME
  /usr/bin/time -f '%e %U %S %M' -o "$tf" \
    timeout -k 10 "$STEP_TIMEOUT" bash -c "$cmd" < "$in" > "$out" 2> "$lg"
  local rc=$? t1=$EPOCHREALTIME w u s m
  read -r w u s m < <(tail -n1 "$tf")
  # wall from bash's microsecond clock (time's %e has 10 ms resolution)
  w=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$input" "$phase" "$rep" "$rc" "$w" "$u" "$s" "$m" "$bytes" >> "$RES"
  if ((rc != 0)); then log "$tool $input $phase rep $rep FAILED rc=$rc (log: $lg)"; tail -n5 "$lg" >&2; fi
  return $rc
}

cycle() {  # cycle TOOL INPUT REP
  local t=$1 input=$2 r=$3 b1=NA b2=NA ok=NA
  local d1=${DAY1[$input]} d2=${DAY2[$input]}
  export REPO=$RUN/repos/$t
  rm -rf "$REPO" "$RUN/home"
  mkdir -p "$RUN/home/config" "$RUN/home/cache"
  local data=$REPO/${DATADIR[$t]:-}
  if ! timeout 120 bash -c "${INIT[$t]}" > "$RUN/logs/$t.$input.init.$r.log" 2>&1; then
    log "$t init failed"; tail -n5 "$RUN/logs/$t.$input.init.$r.log" >&2
    printf '%s\t%s\t%s\tNA\tNA\tINIT_FAILED\n' "$t" "$input" "$r" >> "$SIZES"; return
  fi
  log "$t $input rep $r"
  export SNAP=day1
  if timed "$t" "$input" backup1 "$r" "$d1" /dev/null "$(stat -c %s "$d1")" "${BACKUP[$t]}"; then
    b1=$(du -sb "$data" | cut -f1)
    export SNAP=day2
    if timed "$t" "$input" backup2 "$r" "$d2" /dev/null "$(stat -c %s "$d2")" "${BACKUP[$t]}"; then
      b2=$(du -sb "$data" | cut -f1)
      local out=$RUN/tmp/restore.out
      if timed "$t" "$input" restore "$r" /dev/null "$out" "$(stat -c %s "$d2")" "${RESTORE[$t]}"; then
        if [[ $(sha256sum "$out" | cut -d' ' -f1) == "$(cat "$d2.sha256")" ]]; then ok=OK; else ok=MISMATCH; fi
      else ok=RESTORE_FAILED; fi
      rm -f "$out"
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$input" "$r" "$b1" "$b2" "$ok" >> "$SIZES"
  log "$t $input rep $r: repo day1=$b1 day2=$b2 sha256=$ok"
  chmod -R u+w "$REPO" 2>/dev/null; rm -rf "$REPO"
}

# ------------------------------------------------------------------ references
AGE_KEY=$RUN/age.key
age-keygen -o "$AGE_KEY" 2>/dev/null || die "age-keygen failed"
AGE_PUB=$(age-keygen -y "$AGE_KEY")
export AGE_PUB AGE_KEY
zstd -q -3 -T2 -c "$D1" > "$RUN/tmp/d1.zst"
age -r "$AGE_PUB" < "$RUN/tmp/d1.zst" > "$RUN/tmp/d1.zst.age"
export ZST=$RUN/tmp/d1.zst ZSTAGE=$RUN/tmp/d1.zst.age
meta zstd3_bytes "$(stat -c %s "$ZST")"
meta zstd3_age_bytes "$(stat -c %s "$ZSTAGE")"
declare -a REFS=(
  $'cat\tcat "$D1"'
  $'zstd -3 -T1\tzstd -q -3 -T1 -c "$D1"'
  $'zstd -3 -T2\tzstd -q -3 -T2 -c "$D1"'
  $'age -r\tage -r "$AGE_PUB" < "$D1"'
  $'zstd -3 -T2 | age -r\tzstd -q -3 -T2 -c "$D1" | age -r "$AGE_PUB"'
  $'zstd -d\tzstd -q -d -c "$ZST"'
  $'age -d | zstd -d\tage -d -i "$AGE_KEY" < "$ZSTAGE" | zstd -q -d -c'
)
for t in age zstd; do meta "version:$t" "$($t --version 2>&1 | head -n1)"; done
meta refs_file "$(basename "$D1") $(stat -c %s "$D1")"
meta host "$(nproc) cpu ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r)"
meta fs "$(df -T "$WORK" | awk 'NR==2{print $2" on "$1}')"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta cpu_stat_start "$(head -n1 /proc/stat)"
meta started "$(date -Is)"
meta reps "$REPS"

for e in "${REFS[@]}"; do meta "refcmd:${e%%$'\t'*}" "${e#*$'\t'}"; done
refs() {  # refs REP
  for e in "${REFS[@]}"; do
    name=${e%%$'\t'*} cmd=${e#*$'\t'}
    log "ref $name (rep $1)"
    timed "ref:$name" refs ref "$1" /dev/null /dev/null "$(stat -c %s "$D1")" "set -o pipefail; $cmd" || true
  done
}

# ------------------------------------------------------------------ S3
s3_cycle() {  # s3_cycle TOOL REP: fresh moto, backup day 1, restore, requests
  local t=$1 r=$2 W=$RUN/s3/$1.$2 url rc
  mkdir -p "$W"
  url=$("$ROOT/tests/support/s3-server" "$W/moto.pid" 2> "$W/server.err") || {
    log "S3 test server did not start: $(tail -n 3 "$W/server.err")"; return 1; }
  local vpy=${LOCKBOX_S3_VENV:-${LOCKBOX_CACHE:-$HOME/.cache/lockbox}/moto-venv}/bin/python
  local in_bytes; in_bytes=$(stat -c %s "$D1")
  reqs() { grep -cE '"(GET|PUT|POST|HEAD|DELETE) ' "$W/moto.pid.log"; }
  step() {  # step PHASE STDIN STDOUT CMD
    local n0 t0 t1 rc w m
    n0=$(reqs); sync; t0=$EPOCHREALTIME
    /usr/bin/time -f '%e %M' -o "$W/time" timeout -k 10 "$STEP_TIMEOUT" bash -c "$4" < "$2" > "$3" 2> "$W/$1.log"
    rc=$? t1=$EPOCHREALTIME
    read -r w m < "$W/time"
    w=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$1" "$r" "$rc" "$w" "$m" "$(($(reqs) - n0))" "$in_bytes" >> "$S3RES"
    ((rc == 0)) || { log "s3 $t $1 rep $r FAILED rc=$rc"; tail -n 5 "$W/$1.log" >&2; }
    return $rc
  }
  (
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
    case $t in
      lockbox)
        "$vpy" -c 'import boto3, sys
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(
    Bucket="bench", ObjectLockEnabledForBucket=True)' "$url" || exit 1
        printf 'state_dir = "%s"\n[repository]\nurl = "s3://bench/v"\nrecipients = ["%s"]\nlock_days = 1\n[repository.s3]\nendpoint = "%s"\npath_style = true\n' \
          "$W/state" "$LB_RCPT" "$url" > "$W/lockbox.toml"
        "$LB" -q -c "$W/lockbox.toml" init 2> "$W/init.log" || exit 1
        step backup "$D1" /dev/null '"$LB" -q -c "'"$W"'/lockbox.toml" backup --stdin bench' &&
          step restore /dev/null "$W/out" '"$LB" -q -c "'"$W"'/lockbox.toml" restore latest --source bench -i "$LB_ID" -o -' ;;
      restic)
        export RESTIC_REPOSITORY="s3:$url/restic"
        restic init --repository-version 2 > "$W/init.log" 2>&1 || exit 1
        step backup "$D1" /dev/null 'restic backup --compression auto --stdin --stdin-filename db.sql --host bench' &&
          step restore /dev/null "$W/out" 'restic dump latest /db.sql' ;;
    esac
  )
  rc=$?
  local ok=FAILED
  ((rc == 0)) && [[ $(sha256sum "$W/out" | cut -d' ' -f1) == "$(cat "$D1.sha256")" ]] && ok=OK
  printf '%s\tverdict\t%s\t0\t0\t0\t0\t0\t%s\n' "$t" "$r" "$ok" >> "$S3RES"
  log "s3 $t rep $r: sha256=$ok"
  kill "$(cat "$W/moto.pid")" 2>/dev/null
  rm -rf "$W"
}
S3_TOOLS=()
if [[ $S3 == 1 ]]; then S3_TOOLS=(lockbox); have restic && S3_TOOLS+=(restic); fi

# ------------------------------------------------------------------ the run
# Repetitions outermost: after the first one every figure has a value, so an
# interrupted run still summarises (python3 tests/bench/summarize.py $WORK/run).
last=$REPS; ((REF_REPS > last)) && last=$REF_REPS; ((S3_REPS > last)) && last=$S3_REPS
for ((r = 1; r <= last; r++)); do
  ((r <= REF_REPS)) && refs "$r"
  if ((r <= REPS)); then
    for input in "${ACTIVE_INPUTS[@]}"; do
      for t in "${ACTIVE[@]}"; do cycle "$t" "$input" "$r"; done
    done
  fi
  if ((r <= S3_REPS)); then
    for t in "${S3_TOOLS[@]}"; do log "s3 $t rep $r"; s3_cycle "$t" "$r"; done
  fi
done

meta finished "$(date -Is)"
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta cpu_stat_end "$(head -n1 /proc/stat)"
python3 "$HERE/summarize.py" "$RUN" | tee "$OUT_MD"
log "markdown in $OUT_MD; raw data and logs in $RUN (wiped by the next run)"
