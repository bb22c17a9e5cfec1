#!/usr/bin/env python3
"""Turns the raw TSVs written by peers.sh into one markdown report (stdout).

    summarize.py RUN_DIR

The first table puts Lockbox and its peers side by side, with the ratios
Lockbox / peer; then the physical references, S3, the issue's targets
(met or missed, by how much) and the per-repetition figures (noise check).
"""
import os
import statistics
import sys
from collections import defaultdict

MIB = 1 << 20
INPUT_TEXT = {
    "realistic": "generated pg_dump; day 2: 1 % of rows rewritten, all in the newest 10 % of "
                 "each table, + 1 % appended",
    "scattered": "same day 1; day 2: 1 % of rows rewritten at scattered places, + 1 % appended",
    "pgbench": "`pg_dump -Fc -Z0` of `pgbench -i -s SCALE`; day 2 after `pgbench -T T`",
}


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"


def esc(s):
    return s.replace("|", "\\|")


class Runs:
    """Timings by (tool, input, phase)."""

    def __init__(self, run):
        self.t = defaultdict(list)
        self.fails = []
        for tool, inp, phase, rep, rc, w, u, s, m, nbytes in rows(os.path.join(run, "timings.tsv")):
            ok = rc == "0"
            if not ok:
                self.fails.append(f"{tool} {inp} {phase} rep {rep}: exit {rc}")
            try:
                self.t[(tool, inp, phase)].append(dict(
                    ok=ok, wall=float(w), cpu=float(u) + float(s), rss=int(m) / 1024,
                    bytes=int(nbytes), rep=rep))
            except ValueError:
                self.t[(tool, inp, phase)].append(dict(ok=False, wall=None, cpu=None, rss=None,
                                                       bytes=0, rep=rep))

    def ok(self, tool, inp, phase):
        return [r for r in self.t.get((tool, inp, phase), []) if r["ok"]]

    def walls(self, tool, inp, phase):
        return [r["wall"] for r in self.ok(tool, inp, phase)]

    def wall(self, tool, inp, phase):
        return med(self.walls(tool, inp, phase))

    def mibs(self, tool, inp, phase):
        """(median, min, max) MiB/s: bytes / wall of each repetition."""
        xs = [r["bytes"] / MIB / r["wall"] for r in self.ok(tool, inp, phase) if r["wall"]]
        return (med(xs), min(xs), max(xs)) if xs else (None, None, None)

    def peak(self, tool, inp, phase):
        xs = [r["rss"] for r in self.ok(tool, inp, phase)]
        return max(xs) if xs else None


def spread(m, lo, hi, nd=0):
    if m is None:
        return "n/a"
    if lo is None or hi is None or (round(lo, nd) == round(hi, nd)):
        return fmt(m, nd)
    return f"{fmt(m, nd)} ({fmt(lo, nd)}–{fmt(hi, nd)})"


def ratio(a, b, nd=2):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.{nd}f}×"


def main(run):
    meta = {}
    for k, *v in rows(os.path.join(run, "meta.tsv")):
        meta[k] = v[0] if v else ""
    R = Runs(run)
    out = []
    p = out.append

    if meta.get("mode") == "rss":
        rss_report(meta, R, run, p)
        print("\n".join(out))
        return

    inputs = []
    info = {}
    for k, v in meta.items():
        if k.startswith("input:"):
            name = k.split(":", 1)[1]
            b1, b2, f1, f2 = v.split()
            inputs.append(name)
            info[name] = (int(b1), int(b2), f1, f2)
    sizes = defaultdict(list)
    for tool, inp, rep, b1, b2, ok in rows(os.path.join(run, "sizes.tsv")):
        sizes[(tool, inp)].append((b1, b2, ok))
        if ok != "OK":
            R.fails.append(f"{tool} {inp} rep {rep}: {ok}")
    tools = [k.split(":", 1)[1] for k in meta if k.startswith("version:")
             and any(t == k.split(":", 1)[1] for t, _ in sizes)]
    peers = [t for t in tools if t != "lockbox"]

    def repo(tool, inp, which):
        xs = [int(x[which]) for x in sizes[(tool, inp)] if x[which] not in ("NA", "")]
        return xs

    def added(tool, inp):
        return [int(b2) - int(b1) for b1, b2, _ in sizes[(tool, inp)]
                if b1 not in ("NA", "") and b2 not in ("NA", "")]

    def verdict(tool, inp):
        oks = [x[2] for x in sizes[(tool, inp)]]
        return "OK" if oks and all(o == "OK" for o in oks) else ("/".join(oks) or "n/a")

    date = meta.get("started", "")[:10]
    p(f"# Lockbox and its peers, side by side ({date})\n")
    p(f"- Machine: {meta.get('host', '?')}; repositories on {meta.get('fs', '?')}; inputs in the page cache.")
    steal = ""
    try:
        a = [int(x) for x in meta["cpu_stat_start"].split()[1:]]
        b = [int(x) for x in meta["cpu_stat_end"].split()[1:]]
        d = [y - x for x, y in zip(a, b)]
        steal = f"; CPU idle during the run {100 * d[3] / sum(d):.0f} %, steal {100 * d[7] / sum(d):.1f} %"
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        pass
    p(f"- Run {meta.get('started', '?')} .. {meta.get('finished', '?')}; load average at start "
      f"{meta.get('loadavg_start')}, at end {meta.get('loadavg_end')}{steal}. The machine is shared: "
      "compare ratios within this run.")
    p(f"- Each figure: median of {meta.get('reps', '?')} repetitions (fresh repository each), "
      "min–max in brackets. MiB/s = input (or restored) bytes / wall seconds. "
      "Peak RSS: largest over the repetitions. Restores are sha256-checked against the input.")
    for name in inputs:
        b1, b2, f1, f2 = info[name]
        st = meta.get(f"stats:{f2}", "").strip()
        p(f"- Input **{name}**: day 1 {b1 / MIB:,.1f} MiB (`{f1}`), day 2 {b2 / MIB:,.1f} MiB "
          f"(`{f2}`): {INPUT_TEXT.get(name, '')}" + (f" [{st}]" if st else "") + ".")
    if "skipped:pgbench" in meta:
        p(f"- Input pgbench skipped: {meta['skipped:pgbench']}.")
    p("")

    p("## Side by side\n")
    p("Ratio = Lockbox ÷ peer: above 1 is better for MiB/s, below 1 is better for seconds, "
      "bytes and RSS.\n")
    head = "| input | figure | " + " | ".join(tools) + " | " + \
        " | ".join(f"lockbox/{t}" for t in peers) + " |"
    p(head)
    p("|---|---|" + "---:|" * (len(tools) + len(peers)))

    def line(inp, label, vals, cells):
        """vals: tool -> number used for ratios; cells: tool -> text."""
        lb = vals.get("lockbox")
        p(f"| {inp} | {label} | " + " | ".join(cells.get(t, "n/a") for t in tools) + " | " +
          " | ".join(ratio(lb, vals.get(t)) for t in peers) + " |")

    for inp in inputs:
        v, c = {}, {}
        for t in tools:
            m, lo, hi = R.mibs(t, inp, "backup1")
            v[t], c[t] = m, spread(m, lo, hi)
        line(inp, "backup day 1, MiB/s", v, c)
        v, c = {}, {}
        for t in tools:
            w = R.walls(t, inp, "backup2")
            v[t] = med(w)
            c[t] = spread(med(w), min(w, default=None), max(w, default=None), 2)
        line(inp, "backup day 2, s", v, c)
        v, c = {}, {}
        for t in tools:
            a = added(t, inp)
            v[t] = med(a)
            c[t] = fmt(med(a) / MIB if a else None, 1)
        line(inp, "added by day 2, MiB", v, c)
        v, c = {}, {}
        for t in tools:
            m, lo, hi = R.mibs(t, inp, "restore")
            v[t], c[t] = m, spread(m, lo, hi)
        line(inp, "restore day 2, MiB/s", v, c)
        v, c = {}, {}
        for t in tools:
            r1 = med(repo(t, inp, 0))
            v[t] = r1
            c[t] = fmt(r1 / MIB if r1 else None, 1)
        line(inp, "repository after day 1, MiB", v, c)
        for phase, label in (("backup1", "peak RSS backup, MiB"), ("restore", "peak RSS restore, MiB")):
            v = {t: R.peak(t, inp, phase) for t in tools}
            line(inp, label, v, {t: fmt(x, 0) for t, x in v.items()})
        v = {t: None for t in tools}
        line(inp, "restore byte-identical", v, {t: verdict(t, inp) for t in tools})
    p("")

    # ---------------------------------------------------------------- references
    refs = [name for (name, inp, phase) in R.t if phase == "ref"]
    refs = list(dict.fromkeys(refs))
    if refs:
        rb = meta.get("refs_file", "? 0").split()
        p(f"## Physical references (`{rb[0]}`, output to /dev/null)\n")
        if "zstd3_bytes" in meta:
            z = int(meta["zstd3_bytes"])
            p(f"`zstd -3` makes {z / MIB:,.1f} MiB of it; `zstd -3 | age` {int(meta['zstd3_age_bytes']) / MIB:,.1f} MiB.\n")
        p("| reference | command | MiB/s | wall s | CPU s | peak RSS MiB |")
        p("|---|---|---:|---:|---:|---:|")
        for r in refs:
            name = r.split(":", 1)[1]
            m, lo, hi = R.mibs(r, "refs", "ref")
            cpu = med([x["cpu"] for x in R.ok(r, "refs", "ref")])
            p(f"| {esc(name)} | `{esc(meta.get('refcmd:' + name, ''))}` | {spread(m, lo, hi)} | "
              f"{fmt(R.wall(r, 'refs', 'ref'), 2)} | {fmt(cpu, 2)} | {fmt(R.peak(r, 'refs', 'ref'), 0)} |")
        p("")

    # ---------------------------------------------------------------- S3
    s3 = defaultdict(list)
    s3v = defaultdict(list)
    for tool, phase, rep, rc, w, m, req, nbytes, *v in rows(os.path.join(run, "s3.tsv")):
        if phase == "verdict":
            s3v[tool].append(v[0] if v else "?")
            if v and v[0] != "OK":
                R.fails.append(f"S3 {tool} rep {rep}: {v[0]}")
        elif rc == "0":
            s3[(tool, phase)].append((float(w), int(m) / 1024, int(req), int(nbytes)))
        else:
            R.fails.append(f"S3 {tool} {phase} rep {rep}: exit {rc}")
    s3tools = list(dict.fromkeys(t for t, _ in s3))
    if s3tools:
        p("## Through S3 (the local moto test server, fresh per repetition; day-1 file of the first input)\n")
        p("| tool | backup s | backup MiB/s | requests/GiB | peak RSS MiB | restore s | restore MiB/s | "
          "requests/GiB | peak RSS MiB | byte-identical |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for t in s3tools:
            cells = []
            for phase in ("backup", "restore"):
                xs = s3[(t, phase)]
                if not xs:
                    cells += ["n/a"] * 4
                    continue
                ws = [x[0] for x in xs]
                n = xs[0][3]
                cells += [spread(med(ws), min(ws), max(ws), 2), fmt(n / MIB / med(ws), 0),
                          fmt(med([x[2] for x in xs]) / (n / 2**30), 0), fmt(max(x[1] for x in xs), 0)]
            ok = "OK" if s3v[t] and all(x == "OK" for x in s3v[t]) else "/".join(s3v[t])
            p(f"| {t} | " + " | ".join(cells) + f" | {ok} |")
        p("")

    # ---------------------------------------------------------------- targets
    p("## Targets (issue 10)\n")
    tgt = []

    def target(text, ok, detail):
        tgt.append(f"| {esc(text)} | {'met' if ok else ('**missed**' if ok is False else 'n/a')} | {detail} |")

    main_in = "realistic" if "realistic" in inputs else (inputs[0] if inputs else None)
    if main_in:
        lb1 = R.mibs("lockbox", main_in, "backup1")[0]
        ru1 = R.mibs("rustic", main_in, "backup1")[0]
        if ru1 and lb1:
            target("first backup ≥ 1.5× rustic's throughput", lb1 >= 1.5 * ru1,
                   f"{lb1 / ru1:.2f}× ({lb1:.0f} vs {ru1:.0f} MiB/s)")
        if lb1:
            target("first backup ≥ 300 MiB/s", lb1 >= 300, f"{lb1:.0f} MiB/s ({main_in})")
        zr = R.mibs("ref:zstd -3 -T2 | age -r", "refs", "ref")[0]
        if zr and lb1:
            target("first backup ≥ 75 % of `zstd -3 -T2 | age`", lb1 >= 0.75 * zr,
                   f"{100 * lb1 / zr:.0f} % ({lb1:.0f} vs {zr:.0f} MiB/s)")
        r1 = med(repo("lockbox", main_in, 0))
        if r1 and "zstd3_bytes" in meta:
            z = int(meta["zstd3_bytes"])
            target("stored size within 5 % of `zstd -3`", r1 <= 1.05 * z,
                   f"repository {r1 / z:.3f}× `zstd -3` ({r1 / MIB:.1f} vs {z / MIB:.1f} MiB)")
        lbr = R.mibs("lockbox", main_in, "restore")[0]
        rur = R.mibs("rustic", main_in, "restore")[0]
        if lbr and rur:
            target("restore ≥ 1.5× rustic's (full verification on)", lbr >= 1.5 * rur,
                   f"{lbr / rur:.2f}× ({lbr:.0f} vs {rur:.0f} MiB/s)")
        if lbr:
            target("restore ≥ 600 MiB/s", lbr >= 600, f"{lbr:.0f} MiB/s")
        la, ra = med(added("lockbox", main_in)), med(added("restic", main_in))
        if la is not None and ra is not None:
            target("day 2 (realistic churn) adds no more bytes than restic", la <= ra,
                   f"{la / MIB:.1f} vs {ra / MIB:.1f} MiB ({la / ra:.2f}×)")
        w1, w2 = R.wall("lockbox", main_in, "backup1"), R.wall("lockbox", main_in, "backup2")
        if w1 and w2:
            target("day 2 takes < half of day 1's time", w2 < 0.5 * w1,
                   f"{w2:.2f} s vs {w1:.2f} s ({w2 / w1:.2f}×)")
        peaks = [R.peak("lockbox", i, ph) for i in inputs for ph in ("backup1", "backup2", "restore")]
        peaks = [x for x in peaks if x is not None]
        if peaks:
            target("peak RSS ≤ 100 MiB (these inputs; 20 GiB: `RSS_GIB=20`)", max(peaks) <= 100,
                   f"largest {max(peaks):.0f} MiB")
    for phase in ("backup", "restore"):
        a, b = s3.get(("lockbox", phase)), s3.get(("restic", phase))
        if a and b:
            wa, wb = med([x[0] for x in a]), med([x[0] for x in b])
            target(f"S3 {phase}: Lockbox at least as fast as restic", wa <= wb,
                   f"{wa:.2f} s vs {wb:.2f} s ({wb / wa:.2f}× restic's speed)")
    p("| target | verdict | measured |")
    p("|---|---|---|")
    out.extend(tgt)
    p("")

    # ---------------------------------------------------------------- noise
    p("<details><summary>Per-repetition wall seconds, versions and commands</summary>\n")
    p("| tool / reference | input | phase | wall s per repetition |")
    p("|---|---|---|---|")
    for (name, inp, phase), lst in R.t.items():
        ws = ", ".join(("%.2f" % r["wall"]) + ("" if r["ok"] else " (FAIL)") if r["wall"] is not None
                       else "FAIL" for r in lst)
        p(f"| {esc(name)} | {inp} | {phase} | {ws} |")
    for (t, phase), xs in s3.items():
        p(f"| {t} (S3) | day 1 | {phase} | {', '.join('%.2f' % x[0] for x in xs)} |")
    p("")
    for k, v in meta.items():
        if k.startswith("version:"):
            t = k.split(":", 1)[1]
            line_ = f"- **{t}**: `{v}`"
            if f"settings:{t}" in meta:
                line_ += f"; {meta['settings:' + t]}; `{esc(meta.get('cmd:' + t, ''))}`"
            p(line_)
        if k.startswith("missing:"):
            p(f"- **{k.split(':', 1)[1]}**: not run ({v})")
    p("\n</details>")
    if R.fails:
        p("\n## Failures\n")
        for x in R.fails:
            p(f"- {x}")
    print("\n".join(out))


def rss_report(meta, R, run, p):
    p(f"# Lockbox peak RSS by input size ({meta.get('loadavg_start', '')} load at start)\n")
    p(f"- {meta.get('version:lockbox', '')}; {meta.get('host', '')}; load at end {meta.get('loadavg_end')}.")
    p("- Generated dump piped into `lockbox backup --stdin` (the generator shares the CPUs), then "
      "restored with full verification into `sha256sum`.\n")
    verdict = {inp: ok for _, inp, _, _, _, ok in rows(os.path.join(run, "sizes.tsv"))}
    p("| input | backup s | backup peak RSS MiB | restore s | restore peak RSS MiB | sha256 |")
    p("|---:|---:|---:|---:|---:|---|")
    for (tool, inp, phase), lst in R.t.items():
        if phase != "backup":
            continue
        b, r = lst[0], R.t[(tool, inp, "restore")][0]
        p(f"| {b['bytes'] / 2**30:,.1f} GiB | {b['wall']:.1f} | {b['rss']:.0f} | {r['wall']:.1f} | "
          f"{r['rss']:.0f} | {verdict.get(inp, '?')} |")


if __name__ == "__main__":
    main(sys.argv[1])
