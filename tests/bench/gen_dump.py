#!/usr/bin/env python3
"""Deterministic generator of a realistic PostgreSQL plain-format logical dump.

The output looks like `pg_dump -Fp`: SET preamble, CREATE TABLE / SEQUENCE
statements, one `COPY ... FROM stdin;` block per table (tab-separated text
rows, `\\.` terminator), then setval / constraints / indexes.

Tables (in pg_dump's alphabetical data order): events (~50 % of bytes),
orders (~35 %), users (~15 %).  Rows carry ids, timestamps, names, e-mails,
numerics, uuids, IPs, user agents and JSON columns.

Day model (for measuring content-defined-chunking dedup):
  * day 1 is sized so the whole file is ~SIZE MiB.
  * day d (d >= 2) is day d-1 with ~MODIFY_PCT % of the rows that existed on
    day d-1 rewritten in place (same id, new field values; scattered uniformly
    through every table unless --mod-run > 1 groups them in runs of
    consecutive rows) plus ~APPEND_PCT % new rows appended to the end of each
    table's COPY block (as new heap tuples would be).
  * --hot-pct H (realistic churn): the day's rewrites all fall in the newest
    H % of each table's day-1 rows (and in rows appended since), as when
    recent orders change status and recent events get enriched, while old
    rows stay untouched. Same number of rewritten rows, denser where hot.
Everything is a pure function of (--seed, --size-mib, --day, pcts), so the
same arguments always give byte-identical output.

Usage:  gen_dump.py --size-mib 1024 [--day 2] [-o out.sql]
"""
import argparse
import datetime
import hashlib
import random
import sys
from array import array

BLOCK = 4096          # rows generated per deterministic block
MIB = 1 << 20

# ----------------------------------------------------------------- vocabulary


def _seed(*parts):
    return int.from_bytes(
        hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def _words(rng, n, syl_min, syl_max):
    cons = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr kr pl sh st th tr".split()
    vows = "a e i o u y ai ea ee ie oo ou".split()
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(cons) + rng.choice(vows)
                    for _ in range(rng.randint(syl_min, syl_max)))
        if rng.random() < 0.4:
            w += rng.choice("n r s t l m x k".split())
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


class Vocab:
    def __init__(self, seed):
        rng = random.Random(_seed("vocab", seed))
        self.first = _words(rng, 256, 2, 3)
        self.last = _words(rng, 256, 2, 4)
        self.first_cap = [w.capitalize() for w in self.first]
        self.last_cap = [w.capitalize() for w in self.last]
        self.words = _words(rng, 4096, 1, 4)
        self.cities = [w.capitalize() for w in _words(rng, 256, 2, 3)]
        self.domains = (["gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
                         "icloud.com", "proton.me", "gmx.de", "web.de"] * 4
                        + [w + rng.choice([".com", ".net", ".org", ".io", ".de"])
                           for w in _words(rng, 32, 2, 3)])
        self.countries = ("US US US US GB DE DE FR FR NL SE NO DK FI ES IT PT PL CZ "
                          "AT CH BE IE CA CA AU NZ JP KR IN BR MX AR ZA SG").split()
        self.streets = ["Street", "Avenue", "Road", "Lane", "Way", "Drive", "Court", "Place"]
        self.themes = ["light", "dark", "system", "high-contrast"]
        self.langs = ["en", "en", "en", "de", "fr", "es", "nl", "sv", "ja", "pt"]
        self.bools = ["true", "false"]
        self.tf = ["t", "t", "t", "f"]
        self.order_status = ["pending", "paid", "paid", "paid", "shipped", "shipped",
                             "delivered", "delivered", "delivered", "cancelled",
                             "refunded", "failed"]
        self.currencies = ["USD", "USD", "USD", "EUR", "EUR", "GBP", "SEK", "JPY"]
        self.event_types = ("page_view page_view page_view page_view click click "
                            "search add_to_cart remove_from_cart checkout_start "
                            "checkout_complete login logout signup password_reset "
                            "api_call api_call error").split()
        browsers = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/%d.1 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:%d.0) Gecko/20100101 Firefox/%d.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_%d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "curl/8.%d.0",
            "python-requests/2.%d.1",
        ]
        self.agents = []
        for b in browsers:
            for v in range(100, 132, 2):
                self.agents.append(b.replace("%d", str(v if b.startswith("Mozilla/5.0 (W") or "rv:" in b else v % 30)))
        self.agents = [self.agents[(i * 37) % len(self.agents)] for i in range(64)]
        # time formatting tables
        epoch = datetime.date(2019, 1, 1)
        self.dates = [(epoch + datetime.timedelta(days=i)).isoformat() for i in range(4000)]
        self.hms = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
        self.paths = ["/" + "/".join(rng.sample(self.words, rng.randint(1, 3))) for _ in range(1024)]


# ---------------------------------------------------------------- row makers
# Each maker takes (V, ids, rng, ctx) and returns a list of row strings
# (each ending in "\n").  All randomness comes from rng.


def _rand(rng, n, k):
    a = array("I")
    a.frombytes(rng.randbytes(4 * n * k))
    if a.itemsize != 4:          # pragma: no cover - exotic platforms
        raise SystemExit("array('I') is not 32-bit here")
    return [a[j::k] for j in range(k)]


def _ts(V, ids, jit, gap, t0):
    """timestamp columns derived from id (monotonic + jitter)."""
    secs = [t0 + i * gap + (x % gap) for i, x in zip(ids, jit)]
    return ([V.dates[s // 86400] for s in secs], [V.hms[s % 86400] for s in secs])


def make_users(V, ids, rng, ctx):
    n = len(ids)
    r = _rand(rng, n, 12)
    d, h = _ts(V, ids, r[0], 37, 0)
    d2, h2 = _ts(V, ids, r[1], 37, 86400 * 30)
    fi = [x & 255 for x in r[2]]
    la = [x & 255 for x in r[3]]
    fmt = ("%d\t%s.%s%d@%s\t%s %s\t%s %s.%06d+00\t%s\t%d.%02d\t%s\t"
           '{"theme": "%s", "lang": "%s", "newsletter": %s, "tags": ["%s", "%s"], "score": %d}\t'
           "%s %s.%06d+00\n")
    return [fmt % t for t in zip(
        ids,
        [V.first[x] for x in fi], [V.last[x] for x in la], [x % 1000 for x in r[4]],
        [V.domains[x % len(V.domains)] for x in r[5]],
        [V.first_cap[x] for x in fi], [V.last_cap[x] for x in la],
        d, h, [x % 1000000 for x in r[6]],
        [V.countries[x % len(V.countries)] for x in r[7]],
        [x % 250000 for x in r[8]], [x % 100 for x in r[9]],
        [V.tf[x & 3] for x in r[10]],
        [V.themes[x & 3] for x in r[11]], [V.langs[(x >> 2) % 10] for x in r[11]],
        [V.bools[(x >> 6) & 1] for x in r[11]],
        [V.words[(x >> 7) & 4095] for x in r[11]], [V.words[(x >> 19) & 4095] for x in r[10]],
        [x % 1000 for x in r[9]],
        d2, h2, [x % 1000000 for x in r[5]],
    )]


def make_orders(V, ids, rng, ctx):
    n = len(ids)
    nu = ctx["n_users"]
    r = _rand(rng, n, 11)
    d, h = _ts(V, ids, r[0], 11, 86400 * 60)
    fmt = ("%d\t%d\t%s %s.%06d+00\t%s\t%d.%02d\t%s\t"
           '[{"sku": "SKU-%05d", "name": "%s %s", "qty": %d, "price": %d.%02d}%s]\t'
           "%d %s %s, %s, %s %05d\t%s\n")
    second = ', {"sku": "SKU-%05d", "name": "%s", "qty": %d, "price": %d.%02d}'
    w = V.words
    items2 = [second % (x % 50000, w[(x >> 4) & 4095], 1 + (x >> 16) % 5, (x >> 20) % 300, x % 100)
              if x & 1 else "" for x in r[9]]
    return [fmt % t for t in zip(
        ids, [1 + x % nu for x in r[1]],
        d, h, [x % 1000000 for x in r[2]],
        [V.order_status[x % len(V.order_status)] for x in r[3]],
        [x % 5000 for x in r[4]], [x % 100 for x in r[5]],
        [V.currencies[x & 7] for x in r[6]],
        [x % 50000 for x in r[7]], [w[x & 4095] for x in r[8]], [w[(x >> 12) & 4095] for x in r[8]],
        [1 + (x >> 24) % 4 for x in r[8]], [x % 400 for x in r[6]], [x % 100 for x in r[5]],
        items2,
        [1 + x % 9999 for x in r[10]], [V.cities[(x >> 14) & 255] for x in r[10]],
        [V.streets[(x >> 22) & 7] for x in r[10]], [V.cities[(x >> 4) & 255] for x in r[4]],
        [V.countries[x % len(V.countries)] for x in r[2]], [x % 100000 for x in r[3]],
        [V.tf[(x >> 9) & 3] for x in r[4]],
    )]


def make_events(V, ids, rng, ctx):
    n = len(ids)
    nu = ctx["n_users"]
    r = _rand(rng, n, 12)
    d, h = _ts(V, ids, r[0], 3, 86400 * 90)
    fmt = ("%d\t%d\t%s %s.%06d+00\t%s\t%08x-%04x-4%03x-%04x-%08x%04x\t%d.%d.%d.%d\t%s\t"
           '{"path": "%s", "ref": "%s", "duration_ms": %d, "status": %d, "ab": "%s"}\n')
    return [fmt % t for t in zip(
        ids, [1 + x % nu for x in r[1]],
        d, h, [x % 1000000 for x in r[2]],
        [V.event_types[x % len(V.event_types)] for x in r[3]],
        r[4], [x & 0xffff for x in r[5]], [(x >> 16) & 0xfff for x in r[5]],
        [0x8000 | (x & 0x3fff) for x in r[6]], r[7], [(x >> 16) for x in r[6]],
        [10 + (x & 127) for x in r[8]], [(x >> 8) & 255 for x in r[8]],
        [(x >> 16) & 255 for x in r[8]], [x >> 24 for x in r[8]],
        [V.agents[x & 63] for x in r[9]],
        [V.paths[(x >> 6) & 1023] for x in r[9]], [V.paths[(x >> 16) & 1023] for x in r[10]],
        [x % 30000 for x in r[11]], [(200, 200, 200, 200, 200, 304, 404, 500)[x & 7] for x in r[10]],
        [("control", "variant_a", "variant_b", "none")[(x >> 20) & 3] for x in r[11]],
    )]


TABLES = [
    # name, share of data bytes, maker, DDL columns, COPY column list
    ("events", 0.50, make_events, [
        "id bigint NOT NULL", "user_id bigint NOT NULL",
        "occurred_at timestamp with time zone NOT NULL", "event_type text NOT NULL",
        "session_id uuid", "client_ip inet", "user_agent text", "payload jsonb"]),
    ("orders", 0.35, make_orders, [
        "id bigint NOT NULL", "user_id bigint NOT NULL",
        "created_at timestamp with time zone DEFAULT now() NOT NULL",
        "status character varying(16) NOT NULL", "amount numeric(12,2) NOT NULL",
        "currency character(3) NOT NULL", "items jsonb NOT NULL",
        "shipping_address text", "gift boolean DEFAULT false NOT NULL"]),
    ("users", 0.15, make_users, [
        "id bigint NOT NULL", "email text NOT NULL", "full_name text NOT NULL",
        "created_at timestamp with time zone DEFAULT now() NOT NULL",
        "country character(2)", "balance numeric(12,2) DEFAULT 0 NOT NULL",
        "is_active boolean DEFAULT true NOT NULL", "settings jsonb",
        "updated_at timestamp with time zone"]),
]

HEADER = """--
-- PostgreSQL database dump
--

-- Dumped from database version 15.6 (Debian 15.6-0+deb12u1)
-- Dumped by pg_dump version 15.6 (Debian 15.6-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

"""


def ddl(name, cols):
    c = ",\n".join("    " + x for x in cols)
    return f"""--
-- Name: {name}; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.{name} (
{c}
);


ALTER TABLE public.{name} OWNER TO app;

--
-- Name: {name}_id_seq; Type: SEQUENCE; Schema: public; Owner: app
--

CREATE SEQUENCE public.{name}_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.{name}_id_seq OWNER TO app;

--
-- Name: {name}_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: app
--

ALTER SEQUENCE public.{name}_id_seq OWNED BY public.{name}.id;


"""


def footer(counts):
    out = []
    for name, _, _, _ in TABLES:
        out.append(f"--\n-- Name: {name} id; Type: DEFAULT; Schema: public; Owner: app\n--\n\n"
                   f"ALTER TABLE ONLY public.{name} ALTER COLUMN id SET DEFAULT "
                   f"nextval('public.{name}_id_seq'::regclass);\n\n\n")
    for name, _, _, _ in TABLES:
        out.append(f"--\n-- Name: {name}_id_seq; Type: SEQUENCE SET; Schema: public; Owner: app\n--\n\n"
                   f"SELECT pg_catalog.setval('public.{name}_id_seq', {counts[name]}, true);\n\n\n")
    for name, _, _, _ in TABLES:
        out.append(f"--\n-- Name: {name} {name}_pkey; Type: CONSTRAINT; Schema: public; Owner: app\n--\n\n"
                   f"ALTER TABLE ONLY public.{name}\n    ADD CONSTRAINT {name}_pkey PRIMARY KEY (id);\n\n\n")
    for name, col in (("events", "user_id, occurred_at"), ("orders", "user_id"), ("users", "email")):
        kind = "UNIQUE INDEX" if name == "users" else "INDEX"
        out.append(f"--\n-- Name: {name}_{col.split(',')[0]}_idx; Type: INDEX; Schema: public; Owner: app\n--\n\n"
                   f"CREATE {kind} {name}_{col.split(',')[0]}_idx ON public.{name} USING btree ({col});\n\n\n")
    out.append("--\n-- PostgreSQL database dump complete\n--\n\n")
    return "".join(out)


# ------------------------------------------------------------------ driver
#
# Block b of table T holds ids b*BLOCK+1 .. (b+1)*BLOCK.  Its day-1 rows come
# from an RNG seeded by (seed, T, b, 1); day-d edits from (seed, T, b, d).
# Blocks entirely inside day 1's row range do not depend on anything else, so
# they are generated in worker processes; the few blocks at / after the day-1
# boundary are done serially in the parent.  Output is identical for any -j.

_W = {}   # per-process state: V, ctx, cfg


def _init_worker(cfg):
    _W["cfg"] = cfg
    _W["stats"] = [0, 0]      # rows / bytes rewritten on the last day
    _W["V"] = Vocab(cfg["seed"])


def _maker(name):
    return {t[0]: t[2] for t in TABLES}[name]


def base_rows(name, b):
    cfg = _W["cfg"]
    first_id = b * BLOCK + 1
    return _maker(name)(_W["V"], list(range(first_id, first_id + BLOCK)),
                        random.Random(_seed(cfg["seed"], name, b, 1)), cfg)


def apply_mods(name, b, rows, n_days):
    """Rewrite ~modify_pct % of the rows of each day 2..day (later days win).
    n_days is None while all rows of the block exist on every day."""
    cfg = _W["cfg"]
    first_id = b * BLOCK + 1
    for d in range(2, cfg["day"] + 1):
        lim = len(rows)
        if n_days is not None:
            lim = min(lim, n_days[d - 2] - first_id + 1)
        if lim <= 0:
            continue
        drng = random.Random(_seed(cfg["seed"], name, b, d))
        lo = 0
        rate = cfg["modify_pct"] / 100
        if cfg["hot_pct"] > 0:
            # only rows at or past the table's hot threshold are rewritten,
            # at the density that keeps the table's total about the same
            lo = max(0, cfg["hot_from"][name] - first_id)
            rate = min(1.0, cfg["modify_pct"] / cfg["hot_pct"])
        if lo >= lim:
            continue
        nmod = int((lim - lo) * rate + drng.random())
        if nmod <= 0:
            continue
        run = max(1, cfg["mod_run"])
        nstart = nmod if run == 1 else int(nmod / run + drng.random())
        if nstart <= 0:
            continue
        starts = drng.sample(range(lo, lim), min(lim - lo, nstart))
        idx = sorted({i for s in starts for i in range(s, min(lim, s + run))})
        new = _maker(name)(_W["V"], [first_id + i for i in idx], drng, cfg)
        for i, row in zip(idx, new):
            rows[i] = row
        if d == cfg["day"]:
            st = _W["stats"]
            st[0] += len(idx)
            st[1] += sum(map(len, new))
    return rows


def _parallel_block(job):
    name, b = job
    rows = base_rows(name, b)
    base_len = sum(map(len, rows))
    before = list(_W["stats"])
    data = "".join(apply_mods(name, b, rows, None)).encode()
    return base_len, data, _W["stats"][0] - before[0], _W["stats"][1] - before[1]


class _Prefetch:
    """Blocks 0, 1, 2, ... of one table, computed up to 3*jobs ahead."""

    def __init__(self, pool, name, jobs):
        self.pool, self.name, self.jobs = pool, name, jobs
        self.pending, self.next_b = [], 0

    def __iter__(self):
        while True:
            if self.pool is None:
                self.next_b += 1
                r = _parallel_block((self.name, self.next_b - 1))
                _W["stats"][0] -= r[2]          # counted again by the caller
                _W["stats"][1] -= r[3]
                yield r
                continue
            while len(self.pending) < 3 * self.jobs:
                self.pending.append(self.pool.apply_async(_parallel_block, ((self.name, self.next_b),)))
                self.next_b += 1
            yield self.pending.pop(0).get()

    def drain(self):
        # collect speculative results so no worker is left blocked on a pipe
        for r in self.pending:
            r.wait()
        self.pending = []


def hot_thresholds(cfg, data_budget, hot_pct):
    """First id of the newest hot_pct % of each table's day-1 rows. The
    day-1 row count is estimated from the mean row length of a block near
    the middle of the table (ids there have typical digit counts): a pure
    function of the arguments, so output stays deterministic."""
    out = {}
    for name, share, _, _ in TABLES:
        budget = int(data_budget * share) - 200
        n = BLOCK
        for _ in range(2):
            rows = base_rows(name, max(0, n // 2) // BLOCK)
            n = max(1, int(budget / (sum(map(len, rows)) / len(rows))))
        out[name] = 1 + int(n * (1 - hot_pct / 100))
    return out


def generate(out, size_mib, day, seed, modify_pct, append_pct, mod_run, jobs, hot_pct=0.0):
    total = size_mib * MIB
    head = HEADER + "".join(ddl(n, c) for n, _, _, c in TABLES)
    data_budget = max(0, total - len(head) - 6000)
    cfg = {"seed": seed, "day": day, "modify_pct": modify_pct, "mod_run": mod_run,
           "n_users": max(1000, int(data_budget * 0.15 / 190)), "hot_pct": hot_pct}
    _init_worker(cfg)
    if hot_pct > 0:
        cfg["hot_from"] = hot_thresholds(cfg, data_budget, hot_pct)
        _init_worker(cfg)
    pool = None
    if jobs > 1:
        import multiprocessing
        pool = multiprocessing.get_context("fork").Pool(jobs, _init_worker, (cfg,))
    counts = {}
    app = [0, 0]
    write = out.write
    write(head.encode())
    try:
        for name, share, _, cols in TABLES:
            colnames = ", ".join(c.split()[0] for c in cols)
            write((f"--\n-- Data for Name: {name}; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n"
                   f"COPY public.{name} ({colnames}) FROM stdin;\n").encode())
            budget = int(data_budget * share) - 200
            used = 0
            b = 0
            # 1) whole blocks that fit in the day-1 budget (parallel)
            pre = _Prefetch(pool, name, jobs)
            for base_len, data, mrows, mbytes in pre:
                if used + base_len > budget:
                    break
                used += base_len
                write(data)
                _W["stats"][0] += mrows
                _W["stats"][1] += mbytes
                b += 1
            pre.drain()
            # 2) block holding the day-1 boundary: find n_day1 exactly
            first_id = b * BLOCK + 1
            rows = base_rows(name, b)
            k = 0
            while k < len(rows) and used + len(rows[k]) <= budget:
                used += len(rows[k])
                k += 1
            n_days = [first_id - 1 + max(k, 1 if first_id == 1 else 0)]
            for _ in range(2, day + 1):
                n_days.append(n_days[-1] + max(1, round(n_days[-1] * append_pct / 100)))
            n_cur = n_days[-1]
            # 3) boundary block and appended-row blocks (serial)
            while first_id <= n_cur:
                if rows is None:
                    rows = base_rows(name, b)
                rows = apply_mods(name, b, rows, n_days)
                rows = rows[:n_cur - first_id + 1]
                if day > 1:     # rows appended on the last day
                    new = rows[max(0, n_days[-2] - first_id + 1):]
                    app[0] += len(new)
                    app[1] += sum(map(len, new))
                write("".join(rows).encode())
                b += 1
                first_id = b * BLOCK + 1
                rows = None
            counts[name] = n_cur
            write(b"\\.\n\n\n")
        write(footer(counts).encode())
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    counts["rewritten_rows"], counts["rewritten_bytes"] = _W["stats"]
    counts["appended_rows"], counts["appended_bytes"] = app
    return counts


def main():
    import os
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="approx. size of the day-1 dump")
    ap.add_argument("--day", type=int, default=1, help="1 = base dump, N = N-1 days of churn applied")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--modify-pct", type=float, default=1.0, help="%% of rows rewritten per day")
    ap.add_argument("--append-pct", type=float, default=1.0, help="%% new rows appended per day")
    ap.add_argument("--mod-run", type=int, default=1,
                    help="modified rows come in runs of this many consecutive rows (1 = scattered)")
    ap.add_argument("--hot-pct", type=float, default=0.0,
                    help="rewrites only in the newest HOT_PCT %% of each table's rows (0 = anywhere)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (output is identical for any value)")
    ap.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    a = ap.parse_args()
    if a.day < 1:
        ap.error("--day must be >= 1")
    if not 0 <= a.hot_pct <= 100:
        ap.error("--hot-pct must be in 0..100")
    if a.output == "-":
        out = open(sys.stdout.fileno(), "wb", buffering=8 * MIB, closefd=False)
    else:
        out = open(a.output, "wb", buffering=8 * MIB)
    with out:
        counts = generate(out, a.size_mib, a.day, a.seed, a.modify_pct, a.append_pct,
                          a.mod_run, max(1, a.jobs), a.hot_pct)
    print("rows: " + " ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
