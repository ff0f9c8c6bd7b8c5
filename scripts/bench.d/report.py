"""report.py: scripts/bench's table, targets and chart, from what one run measured.

    python3 report.py FOLDER

FOLDER holds what scripts/bench wrote as it went:
  results.tsv  ID WORKERS REQUESTS/S P99_MS NON2XX ERRORS   a load run each ("-": not measured)
  values.tsv   NAME VALUE                                   single figures (hash time, cores...)
  memory.tsv   WORKERS STAGE PROCESS KIB                    VmRSS of sesamed's processes
and this writes there bench.md (the Markdown table, the targets with PASS or SHORT, memory,
pbkdf2), bench.dat (the chart's data: a scenario a line) and bench.png (gnuplot), and prints
bench.md. Every ratio is between two figures of the same run and the same worker count.
"""
import os
import subprocess
import sys


def read_rows(path, width):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if len(fields) == width:
                    rows.append(fields)
    return rows


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def count_label(n):
    n = int(n)
    if n >= 1000000 and n % 1000000 == 0:
        return f"{n // 1000000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


class Run:
    def __init__(self, folder):
        self.folder = folder
        self.values = dict(read_rows(os.path.join(folder, "values.tsv"), 2))
        self.results = {}
        for rid, w, rps, p99, non2xx, errors in read_rows(os.path.join(folder, "results.tsv"), 6):
            self.results[(rid, w)] = (number(rps), number(p99), number(non2xx), number(errors))
        self.memory = read_rows(os.path.join(folder, "memory.tsv"), 4)
        self.workers = sorted({w for _, w in self.results} | {m[0] for m in self.memory}, key=int)

    def value(self, name, default=None):
        return self.values.get(name, default)

    def rps(self, rid, w):
        r = self.results.get((rid, w))
        return r[0] if r else None


def scenarios(run):
    """(id, label, short label for the chart, yardstick id or None), in the table's order."""
    revoked = count_label(run.value("revoked", 1000000))
    users = count_label(run.value("users", 1000000))
    few = count_label(run.value("few_users", 100))
    rows = [
        ("nginx", "nginx fixed 200 (yardstick)", "nginx", None),
        ("healthz", "GET /healthz", "healthz", "nginx"),
        ("lua", "GET / (Lua route)", "Lua route", "nginx"),
        ("verify_hs0", "GET /auth/verify HS256, 0 revoked", "verify HS256 0", "lua"),
        ("verify_hs", f"GET /auth/verify HS256, {revoked} revoked", "verify HS256", "lua"),
        ("verify_es", f"GET /auth/verify ES256, {revoked} revoked", "verify ES256", "lua"),
        ("hash_limit", "hashing limit (cores / one argon2id hash)", "hashing limit", None),
    ]
    for store, name in (("sqlite", "SQLite"), ("mariadb", "MariaDB")):
        for size, n in (("few", few), ("1m", users)):
            for op, verb in (("register", "register"), ("login", "log-in")):
                rows.append((f"{op}_{store}_{size}", f"{verb}, {name}, {n} users",
                             f"{verb} {name} {n}", "hash_limit"))
    rows += [
        ("p99_verify", "GET /auth/verify HS256 while registering (p99)", "verify under load",
         None),
        ("p99_register", "registrations during that run", "reg. under load", "hash_limit"),
        ("rs_verify_base",
         "GET /auth/verify during RS256 refresh rotations (p99), BENCH_BASE's sesamed",
         "verify RS256 base", None),
        ("rs_refresh_base",
         "RS256 (3072-bit) refresh rotations during that run, BENCH_BASE's sesamed",
         "refresh RS256 base", None),
        ("rs_verify", "GET /auth/verify during RS256 refresh rotations (p99)", "verify RS256",
         None),
        ("rs_refresh", "RS256 (3072-bit) refresh rotations during that run", "refresh RS256",
         "rs_refresh_base"),
        ("tutorial", "tutorial service register (Flask, gunicorn, pbkdf2 29000)", "tutorial",
         None),
        ("sesame_pbkdf2", "sesamed register (pbkdf2_sha256 29000, MariaDB)", "sesame pbkdf2",
         "tutorial"),
        ("register_single", "register, 1 sesamed on 1 MariaDB", "register 1 node", "hash_limit"),
        ("register_cluster", "register, 2 sesamed via HAProxy on 3 Galera nodes",
         "register cluster", "register_single"),
        ("login_single", f"log-in, 1 sesamed on 1 MariaDB, {few} users", "log-in 1 node",
         "hash_limit"),
        ("login_cluster", f"log-in, 2 sesamed via HAProxy on 3 Galera nodes, {few} users",
         "log-in cluster", "login_single"),
    ]
    return rows


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def table(run, rows):
    label = {rid: short for rid, _, short, _ in rows}
    out = ["| target | workers | requests/s | p99 (ms) | ratio | to | non-2xx |",
           "|---|--:|--:|--:|--:|---|--:|"]
    for rid, text, _, yard in rows:
        for w in run.workers:
            r = run.results.get((rid, w))
            if r is None:
                continue
            rps, p99, non2xx, errors = r
            ratio, to = "", ""
            base = run.rps(yard, w) if yard else None
            if rps is not None and base:
                ratio, to = f"{rps / base:.2f}x", label[yard]
            bad = "-" if non2xx is None else f"{non2xx + (errors or 0):.0f}"
            out.append(f"| {text} | {w} | {fmt(rps)} | {fmt(p99, 2)} | {ratio} | {to} | {bad} |")
    return out


def check(ok, text):
    return f"- **{'PASS' if ok else 'SHORT'}** {text}"


def ratio_target(run, w, rid, yard, floor, what):
    a, b = run.rps(rid, w), run.rps(yard, w)
    if a is None or not b:
        return None
    return check(a / b >= floor, f"{what} at {w} worker(s): {a / b:.2f}x (>= {floor:.2f}x; "
                 f"{a:,.0f} against {b:,.0f} requests/s)")


def growth_target(run, w, small, big, what):
    a, b = run.rps(small, w), run.rps(big, w)
    if a is None or not b:
        return None
    change = b / a - 1
    return check(abs(change) <= 0.10, f"{what} at {w} worker(s): {change:+.1%} "
                 f"({a:,.0f} -> {b:,.0f} requests/s; within 10 %)")


def rs_target(run, w):
    """p99 of /auth/verify while RS256 refresh rotations run on that worker; BENCH_BASE's
    beside it."""
    r, base = run.results.get(("rs_verify", w)), run.results.get(("rs_verify_base", w))
    if not r or r[1] is None:
        return None
    before = f"; {base[1]:.2f} ms with BENCH_BASE's sesamed" if base and base[1] else ""
    return check(r[1] <= 5.0, f"p99 of /auth/verify while RS256 refresh rotations run at {w} "
                 f"worker(s): {r[1]:.2f} ms (<= 5 ms{before})")


def targets(run):
    revoked = count_label(run.value("revoked", 1000000))
    users = count_label(run.value("users", 1000000))
    out = []
    for w in run.workers:
        for rid, alg in (("verify_hs", "HS256"), ("verify_es", "ES256")):
            out.append(ratio_target(run, w, rid, "lua", 0.90,
                                    f"/auth/verify {alg} ({revoked} revoked) vs the Lua route"))
            out.append(ratio_target(run, w, rid, "nginx", 0.50,
                                    f"/auth/verify {alg} ({revoked} revoked) vs nginx"))
        out.append(ratio_target(run, w, "healthz", "nginx", 0.65, "/healthz vs nginx"))
        out.append(ratio_target(run, w, "register_sqlite_few", "hash_limit", 0.90,
                                "registrations (SQLite) vs the hashing limit"))
        out.append(ratio_target(run, w, "login_sqlite_few", "hash_limit", 0.90,
                                "log-ins (SQLite) vs the hashing limit"))
        r = run.results.get(("p99_verify", w))
        if r and r[1] is not None:
            busy = run.rps("p99_register", w)
            limit = run.rps("hash_limit", w)
            load = f"; registrations meanwhile {busy / limit:.2f}x the hashing limit" \
                if busy and limit else ""
            out.append(check(r[1] <= 5.0, f"p99 of /auth/verify while registering at {w} "
                             f"worker(s): {r[1]:.2f} ms (<= 5 ms{load})"))
        out.append(rs_target(run, w))
        out.append(growth_target(run, w, "verify_hs0", "verify_hs",
                                 f"/auth/verify HS256, 0 -> {revoked} revoked ids"))
        for store, name in (("sqlite", "SQLite"), ("mariadb", "MariaDB")):
            for op, verb in (("register", "registrations"), ("login", "log-ins")):
                out.append(growth_target(run, w, f"{op}_{store}_few", f"{op}_{store}_1m",
                                         f"{verb} on {name}, few -> {users} users"))
        out.append(ratio_target(run, w, "sesame_pbkdf2", "tutorial", 1.0,
                                "registrations with pbkdf2_sha256 vs the tutorial service"))
    sesame, openssl = number(run.value("pbkdf2_sesame_ms", "")), \
        number(run.value("pbkdf2_openssl_ms", ""))
    passlib = number(run.value("pbkdf2_passlib_ms", ""))
    if sesame and openssl:
        out.append(check(openssl / sesame >= 2, f"pbkdf2_sha256 vs OpenSSL's "
                         f"PKCS5_PBKDF2_HMAC: {openssl / sesame:.2f}x as fast (>= 2x)"))
    if sesame and passlib:
        out.append(check(passlib / sesame >= 2, f"pbkdf2_sha256 vs passlib: "
                         f"{passlib / sesame:.2f}x as fast (>= 2x)"))
    bad = [(rid, w, r[2] + (r[3] or 0)) for (rid, w), r in run.results.items()
           if r[2] is not None and r[2] + (r[3] or 0) > 0]
    if run.results:
        out.append(check(not bad, "no non-2xx answer (nor socket error) in any scenario" +
                         ("" if not bad else ": " + ", ".join(
                             f"{rid} at {w}: {n:.0f}" for rid, w, n in sorted(bad)))))
    return [line for line in out if line]


def memory(run):
    if not run.memory:
        return []
    stages = [("rest", "at rest"), ("revoked",
                                    f"{count_label(run.value('revoked', 1000000))} revoked ids"),
              ("after", "after the runs")]
    kib = {(w, stage, proc): int(k) for w, stage, proc, k in run.memory}
    procs = []
    for w, _, proc, _ in run.memory:
        if (w, proc) not in procs:
            procs.append((w, proc))
    out = ["| sesamed | process | " + " | ".join(t for _, t in stages) + " |",
           "|--:|---|" + "--:|" * len(stages)]
    for w, proc in procs:
        cells = [f"{kib[(w, s, proc)] / 1024:.1f} MiB" if (w, s, proc) in kib else "-"
                 for s, _ in stages]
        out.append(f"| {w} worker(s) | {proc} | " + " | ".join(cells) + " |")
    return out


def pbkdf2(run):
    rows = [("sesame (pbkdf2_sha256 plugin)", "pbkdf2_sesame_ms"),
            ("OpenSSL PKCS5_PBKDF2_HMAC", "pbkdf2_openssl_ms"),
            ("passlib pbkdf2_sha256", "pbkdf2_passlib_ms")]
    sesame = number(run.value("pbkdf2_sesame_ms", ""))
    out = ["| pbkdf2_sha256, 29000 rounds | ms per hash | hashes/s (one core) | sesame's speed "
           "against it |", "|---|--:|--:|--:|"]
    for text, key in rows:
        ms = number(run.value(key, ""))
        if ms:
            vs = f"{ms / sesame:.2f}x" if sesame else "-"
            out.append(f"| {text} | {ms:.3f} | {1000 / ms:,.0f} | {vs} |")
    return out if len(out) > 2 else []


def cluster(run):
    single, galera = number(run.value("refresh_single_ms", "")), \
        number(run.value("refresh_cluster_ms", ""))
    if not single or not galera:
        return []
    return ["| one refresh (a chain of 200, one client) | ms |", "|---|--:|",
            f"| 1 sesamed on 1 MariaDB | {single:.2f} |",
            f"| 2 sesamed via HAProxy on 3 Galera nodes | {galera:.2f} "
            f"({galera / single:.2f}x) |"]


def blocklist(run):
    if run.value("blocklist_n") is None:
        return []
    return ["| blocklist validator | read (ms) | checks/s | bytes/password |",
            "|---|--:|--:|--:|",
            f"| {int(run.value('blocklist_n')):,} passwords | {run.value('blocklist_load')} | "
            f"{run.value('blocklist_rate')} | {run.value('blocklist_bytes')} |"]


def chart(run, rows, folder):
    """bench.dat: scenario, label, then requests/s and p99 per worker count; and bench.png."""
    data = os.path.join(folder, "bench.dat")
    with open(data, "w") as f:
        f.write("# scenario label " + " ".join(f"rps_{w}w p99_{w}w" for w in run.workers) + "\n")
        for rid, _, short, _ in rows:
            if not any((rid, w) in run.results for w in run.workers):
                continue
            cells = []
            for w in run.workers:
                rps, p99, _, _ = run.results.get((rid, w), (None, None, None, None))
                cells += ["-" if rps is None else f"{rps:.1f}", "-" if p99 is None else
                          f"{p99:.3f}"]
            f.write(f'{rid} "{short}" ' + " ".join(cells) + "\n")
    plots_rps = ", ".join(f"'{data}' using {3 + 2 * i}:xtic(2) title '{w} worker(s)'"
                          for i, w in enumerate(run.workers))
    plots_p99 = ", ".join(f"'{data}' using {4 + 2 * i}:xtic(2) title '{w} worker(s)'"
                          for i, w in enumerate(run.workers))
    script = f"""
set terminal pngcairo size 1400,1000 font ",10"
set output '{os.path.join(folder, "bench.png")}'
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set grid ytics
set key top right
set xtics rotate by -35 scale 0
set multiplot layout 2,1 title "sesame: scripts/bench, {run.value('seconds', '?')} s a run"
set ylabel "requests/s (log)"
plot {plots_rps}
set ylabel "p99 latency, ms (log)"
plot {plots_p99}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main(folder):
    run = Run(folder)
    rows = scenarios(run)
    lines = [run.value("machine", "").replace("\\n", "\n"), ""]
    hashes = "; ".join(f"{w} worker(s): {run.value('hash_ms_' + w)} ms" for w in run.workers
                       if run.value("hash_ms_" + w))
    hashes = f" One argon2id hash (19456 KiB, 2 iterations; the hashing limit is cores / " \
        f"its time), timed before each worker count's runs: {hashes}." if hashes else ""
    lines += [f"wrk on loopback, {run.value('seconds', '?')} s a run, "
              f"{run.value('connections', '?')} connections ({run.value('hash_connections', '?')}"
              f" for registrations and log-ins), {run.value('cores', '?')} cores.{hashes} "
              f"Each ratio is to a figure of the same run with the same number of workers; "
              f"non-2xx counts socket errors too.", ""]
    if run.results:
        lines += table(run, rows) + [""]
    lines += ["Targets:", ""] + targets(run) + [""]
    for part, title in ((memory(run), "Resident memory (VmRSS):"),
                        (pbkdf2(run), "pbkdf2_sha256:"), (cluster(run), "The cluster:"),
                        (blocklist(run), "")):
        if part:
            lines += ([title, ""] if title else []) + part + [""]
    for note in run.value("notes", "").split("\\n"):
        if note:
            lines.append(f"Note: {note}")
    text = "\n".join(lines).rstrip() + "\n"
    with open(os.path.join(folder, "bench.md"), "w") as f:
        f.write(text)
    if run.results:
        chart(run, rows, folder)
    sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1])
