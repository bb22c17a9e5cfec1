#!/usr/bin/env bash
# bench.sh - reproducible benchmark of Lockbox on a generated pg_dump-like file.
#
#   tests/bench/bench.sh                       # SIZE_MIB=1024 REPS=3
#   SIZE_MIB=64 REPS=1 tests/bench/bench.sh    # smoke run
#   INPUT_GIB_STREAM=8 tests/bench/bench.sh    # 8 GiB streamed through backup: peak RSS
#
# Env: SIZE_MIB (1024), REPS (3), WORK (/tmp/lockbox-bench; dumps cached in
# $WORK/data), GEN (default: tests/bench/gen_dump.py).
# Each rep, fresh repository: backup day1 and day2 from stdin (added = growth of
# `du -sb` of the repo); restore latest `-o -` > file and `-o FILE` (verified,
# fsynced, renamed), each must be byte-identical to day2; references on day1:
# `zstd -3 -T2 | age -r`, `age -d | zstd -d`. Wall s and peak RSS (%M: for a
# pipeline, its largest process) from /usr/bin/time; inputs in the page cache.
# The markdown report goes to stdout and $WORK/run/results.md.
set -euo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
GEN=${GEN:-$ROOT/tests/bench/gen_dump.py}
SIZE_MIB=${SIZE_MIB:-1024} REPS=${REPS:-3} WORK=${WORK:-/tmp/lockbox-bench}
INPUT_GIB_STREAM=${INPUT_GIB_STREAM:-}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
for t in python3 /usr/bin/time zstd age cmp du git; do
  command -v "$t" >/dev/null || die "missing $t (apt-get install -y python3 time zstd age)"; done
[[ -f $GEN ]] || die "generator not found at $GEN (set GEN=/path/to/gen_dump.py)"

log "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
LB=$TARGET/release/lockbox
[[ -x $LB ]] || die "no binary at $LB"

RUN=$WORK/run DATA=$WORK/data
[[ -d $RUN ]] && chmod -R u+w "$RUN" && rm -rf "$RUN"
mkdir -p "$RUN" "$DATA"
RES=$RUN/times.txt   # lines: STEP SECONDS PEAK_RSS_KIB, or: sizes DAY1_REPO DAY2_REPO
LOG=$RUN/stderr.log  # stderr of every measured command
: > "$RES"

# measure STEP CMD... : runs CMD (redirections at the call site apply to it).
measure() {
  local step=$1; shift
  /usr/bin/time -f '%e %M' -o "$RUN/time.out" "$@" 2>>"$LOG" ||
    die "$step: exit status $?; end of $LOG:"$'\n'"$(tail -n 5 "$LOG")"
  echo "$step $(tail -n 1 "$RUN/time.out")" >> "$RES"
}

# new_repo NAME : fresh identity, config and repository; sets R ID RCPT CFG.
new_repo() {
  R=$RUN/$1 ID=$RUN/$1/identity.txt CFG=$RUN/$1/lockbox.toml
  mkdir -p "$R"
  RCPT=$("$LB" keygen -o "$ID" 2>/dev/null)
  printf 'state_dir = "%s"\n[repository]\nurl = "file://%s"\nrecipients = ["%s"]\nlock_days = 1\n' \
    "$R/state" "$R/repo" "$RCPT" > "$CFG"
  "$LB" -q -c "$CFG" init 2>>"$LOG" || die "init failed: $(tail -n 3 "$LOG")"
}

drop_repo() { chmod -R u+w "$R" && rm -rf "$R"; }

{ echo "# Lockbox benchmark $(date -u +%FT%TZ)"; echo
  echo "- lockbox $("$LB" --version | cut -d' ' -f2) @ $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'); $(nproc) CPUs; $(uname -r)"
} > "$RUN/results.md"

if [[ -n $INPUT_GIB_STREAM ]]; then
  # Memory check: generated data piped straight into `backup --stdin`, a small
  # and a large input, each in a fresh repository. Fresh rows all the way, so
  # dedup does not hide the work. The generator shares the CPUs and sets the
  # pace: MiB/s here is not Lockbox's throughput.
  for mib in 256 $((INPUT_GIB_STREAM * 1024)); do
    log "streaming $mib MiB of generated dump into lockbox backup --stdin"
    new_repo "stream-$mib"
    python3 "$GEN" --size-mib "$mib" 2>>"$LOG" |
      measure "stream_${mib}" "$LB" -q -c "$CFG" backup --json --stdin bench > "$R/summary.json" ||
      die "streaming $mib MiB failed; see $LOG"
    python3 -c 'import json,sys; print("stream_input_bytes", json.load(open(sys.argv[1]))["input_bytes"])' \
      "$R/summary.json" >> "$RES"
    drop_repo
  done
  python3 - "$RES" >> "$RUN/results.md" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
print("\n| input streamed | wall s | MiB/s | peak RSS MiB |\n|---:|---:|---:|---:|")
for (step, s, kib), (_, n) in zip(rows[0::2], rows[1::2]):
    mib = int(n) / 2**20
    print(f"| {mib:,.0f} MiB | {float(s):.1f} | {mib / max(float(s), 1e-9):.0f} | {int(kib) / 1024:.0f} |")
EOF
  cat "$RUN/results.md"
  exit 0
fi

D1=$DATA/day1-${SIZE_MIB}M.sql D2=$DATA/day2-${SIZE_MIB}M.sql
for day in 1 2; do
  f=$DATA/day$day-${SIZE_MIB}M.sql
  [[ -s $f ]] && continue
  log "generating $f"
  python3 "$GEN" --size-mib "$SIZE_MIB" --day "$day" -o "$f.part" 2>>"$LOG" || die "gen_dump.py failed; see $LOG"
  mv "$f.part" "$f"
done

# Reference ciphertext, made once, and the zstd -3 size of day1.
REF_ID=$RUN/ref-identity.txt
REF_RCPT=$("$LB" keygen -o "$REF_ID" 2>/dev/null)
zstd -q -3 -T2 -c "$D1" > "$RUN/day1.zst"; ZSTD_BYTES=$(stat -c %s "$RUN/day1.zst")
age -r "$REF_RCPT" -o "$RUN/day1.zst.age" "$RUN/day1.zst"; rm "$RUN/day1.zst"

for rep in $(seq 1 "$REPS"); do
  log "rep $rep/$REPS"
  new_repo "rep$rep"
  measure backup_day1 "$LB" -q -c "$CFG" backup --stdin bench < "$D1" > /dev/null
  s1=$(du -sb "$R/repo" | cut -f1)
  measure backup_day2 "$LB" -q -c "$CFG" backup --stdin bench < "$D2" > /dev/null
  echo "sizes $s1 $(du -sb "$R/repo" | cut -f1)" >> "$RES"
  measure restore_stdout "$LB" -q -c "$CFG" restore latest --source bench -i "$ID" -o - > "$R/out"
  cmp "$R/out" "$D2" && rm "$R/out" || die "restore to stdout is NOT byte-identical to day2"
  measure restore_file "$LB" -q -c "$CFG" restore latest --source bench -i "$ID" -o "$R/out"
  cmp "$R/out" "$D2" && rm "$R/out" || die "restore --output is NOT byte-identical to day2"
  measure ref_zstd_age bash -c 'set -o pipefail; zstd -q -3 -T2 -c "$1" | age -r "$2" > /dev/null' \
    _ "$D1" "$REF_RCPT"
  measure ref_age_zstd_d bash -c 'set -o pipefail; age -d -i "$1" < "$2" | zstd -q -d > /dev/null' \
    _ "$REF_ID" "$RUN/day1.zst.age"
  drop_repo
done

python3 - "$RES" "$(stat -c %s "$D1")" "$(stat -c %s "$D2")" "$ZSTD_BYTES" "$REPS" "$SIZE_MIB" \
  >> "$RUN/results.md" <<'EOF'
import statistics as st, sys
res, d1, d2, zst, reps, size = sys.argv[1], *map(int, sys.argv[2:])
M = 2**20
steps, sizes = {}, []
for line in open(res):
    k, *v = line.split()
    if k == "sizes": sizes.append(tuple(map(int, v)))
    else: steps.setdefault(k, []).append((float(v[0]), int(v[1]) / 1024))
label = {
    "backup_day1": ("backup day1, stdin", d1), "backup_day2": ("backup day2, stdin", d2),
    "restore_stdout": ("restore day2, `-o -` > file", d2),
    "restore_file": ("restore day2, `-o FILE`", d2),
    "ref_zstd_age": ("ref: `zstd -3 -T2 \\| age -r` day1", d1),
    "ref_age_zstd_d": ("ref: `age -d \\| zstd -d` day1", d1),
}
print(f"- input: day1 {d1 / M:.1f} MiB, day2 {d2 / M:.1f} MiB (gen_dump.py --size-mib {size}); "
      f"{reps} rep(s), fresh repository each; restores byte-identical (cmp)\n")
print("| step | median s | min–max s | MiB/s | peak RSS MiB |\n|---|---:|---:|---:|---:|")
for k, (name, n) in label.items():
    t = [s for s, _ in steps[k]]
    m = st.median(t)
    print(f"| {name} | {m:.2f} | {min(t):.2f}–{max(t):.2f} | {n / M / max(m, 1e-9):.0f} "
          f"| {st.median(r for _, r in steps[k]):.0f} |")
r1 = st.median(a for a, _ in sizes)
add = st.median(b - a for a, b in sizes)
print(f"\n- repository after day1: {r1 / M:.1f} MiB = {r1 / zst:.3f} × `zstd -3` of day1 "
      f"({zst / M:.1f} MiB); input/stored {d1 / r1:.2f}")
print(f"- added by day2: {add / M:.1f} MiB = {100 * add / r1:.1f} % of the day-1 repository")
EOF
cat "$RUN/results.md"
