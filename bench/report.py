#!/usr/bin/env python3
"""Turn bench/out (written by bench/run.sh) into bench/RESULTS.md on stdout.

Standard library only. Medians over the R runs of each cell; accuracy is the
worst run's, since one wrong status is a bug whatever the median says.
"""

import collections
import csv
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def parse_time(path):
    t = {}
    for line in read(path).splitlines():
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    wall = t.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part or 0)
    return {
        "wall": secs,
        "rss_mib": int(t.get("Maximum resident set size (kbytes)", 0)) / 1024,
        "cpu": float(t.get("User time (seconds)", 0)) + float(t.get("System time (seconds)", 0)),
    }


def cmd_output(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool leaves the field empty
        return ""


runs = collections.defaultdict(list)
for d in sorted(glob.glob(os.path.join(OUT, "runs", "*"))):
    m = re.match(r"(\w+)-(\w+)-n(\d+)-c(\d+)-r(\d+)$", os.path.basename(d))
    if not m:
        continue
    who, mix, n, c = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    t = parse_time(os.path.join(d, "time.txt"))
    try:
        acc = json.loads(read(os.path.join(d, "accuracy.json"), "{}"))
    except json.JSONDecodeError:
        acc = {}
    t.update(
        rc=read(os.path.join(d, "rc"), "?"),
        fleet_cpu=float(read(os.path.join(d, "fleet_cpu_s"), "0") or 0),
        status_acc=acc.get("status_accuracy_pct", 0.0),
        reason_acc=acc.get("reason_accuracy_pct", 0.0),
        missing=acc.get("missing", n),
        acc=acc,
        cmd=read(os.path.join(d, "cmd")),
        n=n,
    )
    t["cps"] = n / t["wall"] if t["wall"] else 0.0
    runs[(who, mix, n, c)].append(t)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


cells = {}
for key, rs in runs.items():
    cells[key] = {
        "runs": len(rs),
        "wall": med([r["wall"] for r in rs]),
        "cps": med([r["cps"] for r in rs]),
        "rss": med([r["rss_mib"] for r in rs]),
        "rss_max": max(r["rss_mib"] for r in rs),
        "cpu": med([r["cpu"] for r in rs]),
        # CPU ms per 1,000 checks: CPU s * 1000 / (N / 1000).
        "cpu_per_k": med([r["cpu"] * 1e6 / r["n"] for r in rs]),
        "fleet_cpu": med([r["fleet_cpu"] for r in rs]),
        "status_acc": min(r["status_acc"] for r in rs),
        "reason_acc": min(r["reason_acc"] for r in rs),
        "rcs": ",".join(sorted({r["rc"] for r in rs})),
        "cmd": rs[-1]["cmd"],
        "acc": rs[-1]["acc"],
    }

p = print
p("# Benchmark results")
p()
p("Written by `bench/run.sh` (then `bench/report.py`); do not edit by hand.")
p()
p("## Machine")
p()
cpu_model = ""
for line in read("/proc/cpuinfo").splitlines():
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
p(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
p(f"- nproc: {os.cpu_count()} (the fleet runs on the same cores as the contender)")
p(f"- CPU: {cpu_model}")
p(f"- kernel: {platform.release()}")
p(f"- rustc: {cmd_output('rustc', '--version')}")
p(f"- python: {platform.python_version()}")
p(f"- RLIMIT_NOFILE in the run: {read(os.path.join(OUT, 'nofile'), '?')}")
windows = collections.defaultdict(list)
for d in glob.glob(os.path.join(OUT, "runs", "*", "time.txt")):
    windows[os.path.basename(os.path.dirname(d)).split("-")[0]].append(os.path.getmtime(d))
for d in glob.glob(os.path.join(OUT, "exporter", "*", "scrapes.txt")):
    windows["exporter"].append(os.path.getmtime(d))
fmt = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M")
p("- measured (UTC, runs may come from separate invocations with KEEP_OUT=1): " + "; ".join(
    f"{k} {fmt(min(v))}-{fmt(max(v))}" for k, v in sorted(windows.items())))
p(f"- `ours` revision: {read(os.path.join(OUT, 'ours_revision'), '?')}")
if read(os.path.join(OUT, "base_revision")):
    p(f"- `base` (BASE_BIN, the same command from another revision): {read(os.path.join(OUT, 'base_revision'))}")
p(f"- `ours` (pharox-exporter sweep --once) measured: {'yes' if read(os.path.join(OUT, 'ours_enabled')) == '1' else 'no (not usable yet on this tree)'}")
p()

truth = os.path.join(OUT, "truth-mixed-1000.csv")
if os.path.exists(truth):
    mix = collections.Counter()
    protos = collections.Counter()
    with open(truth, newline="") as f:
        for row in csv.DictReader(f):
            mix[row["class"]] += 1
            protos[row["protocol"]] += 1
    tot = sum(mix.values())
    p("## Workload")
    p()
    p("Mix `mixed` (same percentages at every N): " +
      ", ".join(f"{k} {v * 100 / tot:.0f}%" for k, v in mix.most_common()) + ".")
    p("Protocols: " + ", ".join(f"{k} {v * 100 / tot:.0f}%" for k, v in protos.most_common()) + ".")
    p()
    p("Mix `healthy`: 100% healthy proxies, same protocol split: nothing sleeps, so checks/s measures "
      "the CPU cost of a check.")
    p()
    knobs = dict(kv.split("=", 1) for kv in read(os.path.join(OUT, "knobs"), "TIMEOUT_S=2 SLOW_MS=500 SLOW_DELAY_MS=800").split())
    p(f"Timeout {knobs.get('TIMEOUT_S')} s, slow threshold {knobs.get('SLOW_MS')} ms, 1 attempt; slow proxies answer "
      f"after {knobs.get('SLOW_DELAY_MS')} ms, hanging ones never (the checker's timeout ends them). The fleet "
      "short-circuits every tunnel: after the SOCKS/CONNECT handshake (or on an absolute-form GET to the HTTP "
      "proxy) it answers `200 ok` itself instead of dialling the target, so the fleet stays cheap and the checker "
      "is the bottleneck. The fleet shares the 2 cores with the contender (its CPU is shown per run).")
    p()
    p("Mixes ending in `_https` are the same inventories against the HTTPS target (127.0.0.1:8443, a CA made "
      "at the fleet's start, stateless session tickets): HTTP proxies CONNECT, SOCKS proxies tunnel, then a "
      "verified TLS handshake and the GET inside it. `lean` resumes TLS sessions (one shared rustls config), "
      "`lean_nores` does a full handshake every time.")
    p()

p("## Sweep throughput (medians)")
p()
p("checks/s = N / wall (wall from `/usr/bin/time -v`, process start to exit, CSV read included). "
  "CPU = user+sys of the contender; fleet CPU = the fake fleet's CPU during the run. "
  "Accuracy = worst run, status (and status+reason where the contender reports reasons). "
  "On `mixed` the wall is held up by the slow and hanging proxies (slot-seconds / concurrency: "
  "23.4 s at N=100k C=256, 11.7 s at C=512), so there the ratio shows that the checker adds no latency; "
  "`healthy` shows the CPU cost.")
p()
p("| contender | mix | N | concurrency | runs | wall s | checks/s | CPU ms / 1k checks | peak RSS MiB | CPU s | fleet CPU s | status acc % | status+reason acc % | exit codes |")
p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
order = {"lean": 0, "lean_nores": 1, "base": 2, "ours": 3, "pharox": 4}


def sort_key(k):
    return (k[1], k[2], k[3], order.get(k[0], 9))


for key in sorted(cells, key=sort_key):
    who, mix, n, c = key
    x = cells[key]
    reason = "n/a" if who == "pharox" else f"{x['reason_acc']:.2f}"
    p(f"| {who} | {mix} | {n} | {c if c else 'unbounded'} | {x['runs']} | {x['wall']:.2f} | {x['cps']:.0f} | {x['cpu_per_k']:.0f} | {x['rss']:.1f} | "
      f"{x['cpu']:.2f} | {x['fleet_cpu']:.2f} | {x['status_acc']:.2f} | {reason} | {x['rcs']} |")
p()

ratios = []
for (who, mix, n, c), x in cells.items():
    if who == "ours" and ("lean", mix, n, c) in cells:
        lean = cells[("lean", mix, n, c)]
        ratios.append((mix, n, c, x["cps"] / lean["cps"],
                       x["cpu_per_k"] / lean["cpu_per_k"] if lean["cpu_per_k"] else float("nan"),
                       x["rss"] / lean["rss"] if lean["rss"] else float("nan")))
base_ratios = []
for (who, mix, n, c), x in cells.items():
    if who == "ours" and ("base", mix, n, c) in cells:
        b = cells[("base", mix, n, c)]
        base_ratios.append((mix, n, c, x["cps"] / b["cps"], x["cpu"] / b["cpu"] if b["cpu"] else float("nan"),
                            x["rss"] / b["rss"] if b["rss"] else float("nan")))
if base_ratios:
    p("## ours / base (this tree against `BASE_BIN`, another revision, in the same run)")
    p()
    p("| mix | N | concurrency | checks/s ratio | CPU s ratio | peak RSS ratio |")
    p("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mix, n, c, r, cr, rr in sorted(base_ratios):
        p(f"| {mix} | {n} | {c} | {r:.2f} | {cr:.2f} | {rr:.2f} |")
    p()
if ratios:
    p("## ours / lean (at equal concurrency)")
    p()
    p("| mix | N | concurrency | checks/s ratio | CPU per check ratio | peak RSS ratio |")
    p("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mix, n, c, r, cr, rr in sorted(ratios):
        p(f"| {mix} | {n} | {c} | {r:.2f} | {cr:.2f} | {rr:.2f} |")
    p()

strace_dir = os.path.join(OUT, "strace")
if os.path.isdir(strace_dir):
    p("## Syscalls (`strace -c -f`, one run each)")
    p()
    p("Counts are insensitive to CPU contention: futex = cross-thread wake-ups and contended locks, "
      "recvfrom = reads. Under strace every syscall is slow, so only the counts mean anything.")
    p()
    p("| contender | mix | N | futex | futex / check | recvfrom | recvfrom / check | all syscalls |")
    p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    strace_n = int(os.environ.get("STRACE_N", "20000"))
    for f in sorted(glob.glob(os.path.join(strace_dir, "*.txt"))):
        who, _, mix = os.path.basename(f)[:-4].partition("-")
        calls = {}
        for line in read(f).splitlines():
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
                calls[parts[-1]] = int(parts[3])
        total = calls.pop("total", sum(calls.values()))
        fx, rv = calls.get("futex", 0), calls.get("recvfrom", 0)
        p(f"| {who} | {mix} | {strace_n} | {fx} | {fx / strace_n:.3f} | {rv} | {rv / strace_n:.2f} | {total} |")
    p()

exp_dir = os.path.join(OUT, "exporter")
exp = {}
if os.path.isdir(exp_dir):
    p("## Long-running exporter")
    p()
    p("RSS is read from /proc after the exporter logged the sweeps waited for (the next sweep is then "
      "running); the 10 scrapes follow at once. Scrape time is curl's `time_total` on loopback.")
    p()
    p("| run | sweeps waited (done) | sweep durations s (log) | VmRSS after them | VmHWM | /metrics median ms | p90 ms | size bytes | OpenMetrics ms/bytes |")
    p("| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- |")
    for label in sorted(os.listdir(exp_dir)):
        d = os.path.join(exp_dir, label)
        rss = dict(line.split(":", 1) for line in read(os.path.join(d, "rss_after_first_sweep.txt")).splitlines() if ":" in line)
        scr = [line.split() for line in read(os.path.join(d, "scrapes.txt")).splitlines() if line.strip()]
        times = sorted(float(s[0]) * 1000 for s in scr if len(s) == 2)
        size = scr[-1][1] if scr else "?"
        om = read(os.path.join(d, "scrape_openmetrics.txt")).split()
        om_s = f"{float(om[0]) * 1000:.1f} / {om[1]}" if len(om) == 2 else "?"
        mtime = med(times)
        err = read(os.path.join(d, "stderr.txt"))
        m = re.search(r'message="sweep completed" checked=(\d+) seconds=([0-9.]+)', err)
        m2 = re.search(r'message="sweep overran[^"]*" elapsed_seconds=([0-9.]+)', err)
        loaded = re.search(r'message="inventory loaded" proxies=(\d+)', err)
        inv_n = int(loaded.group(1)) if loaded else (1_000_000 if "1m" in label else 100_000)
        durs = [float(x) for x in re.findall(r'message="sweep (?:completed" checked=\d+ seconds|overran[^"]*" elapsed_seconds)=([0-9.]+)', err)]
        if durs:
            if m and (not m2 or m.start() < m2.start()):
                inv_n = int(m.group(1))
            first = ", ".join(f"{x:.1f}" for x in durs) + f" ({inv_n / durs[0]:.0f} checks/s first"
            first += ", overran the 30 s interval)" if m2 else ")"
        else:
            first = read(os.path.join(d, "first_sweep_wait_s"))
        want = {"agg-1m-3sweeps": 3}.get(label.removeprefix("base-"), 1)
        p90 = times[min(len(times) - 1, int(len(times) * 0.9))] if times else float("nan")
        exp[label] = {"rss": rss, "scrape_ms": mtime}
        p(f"| {label} | {want} ({'yes' if read(os.path.join(d, 'first_sweep_done')) == '1' else 'no'}) | {first} | "
          f"{rss.get('VmRSS', '?').strip()} | {rss.get('VmHWM', '?').strip()} | {mtime:.1f} | {p90:.1f} | {size} | {om_s} |")
    p()
    p("Commands:")
    p()
    for label in sorted(os.listdir(exp_dir)):
        p(f"- {label}: `{read(os.path.join(exp_dir, label, 'cmd'))}`")
    p()


def kib(s):
    m = re.match(r"\s*(\d+)\s*kB", s or "")
    return int(m.group(1)) if m else None


p("## Targets")
p()
p("| target | measured | met |")
p("| --- | --- | --- |")
big = max((k[2] for k in cells if k[0] == "ours"), default=None)
if big:
    for mix, c in sorted({(k[1], k[3]) for k in cells if k[0] == "ours" and k[2] == big}):
        x = cells[("ours", mix, big, c)]
        lean = cells.get(("lean", mix, big, c))
        tag = f"sweep --once {mix} N={big} C={c}"
        if lean:
            r = x["cps"] / lean["cps"]
            p(f"| {tag} >= 0.95x lean checks/s | {x['cps']:.0f} vs {lean['cps']:.0f} = {r:.2f}x | {'yes' if r >= 0.95 else 'no'} |")
            cr = x["cpu_per_k"] / lean["cpu_per_k"] if lean["cpu_per_k"] else float("nan")
            p(f"| {tag} CPU per 1,000 checks <= 1.25x lean | {x['cpu_per_k']:.0f} vs {lean['cpu_per_k']:.0f} ms = {cr:.2f}x | {'yes' if cr <= 1.25 else 'no'} |")
        need = 99.5 if mix.endswith("_https") else 100.0
        p(f"| {tag} status accuracy >= {need}% | {x['status_acc']:.3f}% (status+reason {x['reason_acc']:.3f}%) | {'yes' if x['status_acc'] >= need else 'no'} |")
        p(f"| {tag} peak RSS <= 48 MiB | {x['rss_max']:.1f} MiB (worst run) | {'yes' if x['rss_max'] <= 48 else 'no'} |")
else:
    p("| sweep --once targets | not measured: `sweep --once` not usable on this tree | no |")
one_m = exp.get("agg-1m-3sweeps")
hwm = kib(one_m["rss"].get("VmRSS")) if one_m else None
if hwm:
    p(f"| exporter with 1M proxies <= 320 MiB steady (VmRSS after 3 sweeps) | {hwm / 1024:.0f} MiB | {'yes' if hwm <= 320 * 1024 else 'no'} |")
else:
    p("| exporter with 1M proxies <= 320 MiB steady | not measured | no |")
for label, what, limit in (("perproxy-100k-all", "/metrics per-proxy series for 100k", 60),
                           ("agg-100k", "/metrics aggregated at 100k", 2)):
    e = exp.get(label)
    if e and e["scrape_ms"] == e["scrape_ms"]:
        p(f"| {what} <= {limit} ms (median of 10) | {e['scrape_ms']:.1f} ms | {'yes' if e['scrape_ms'] <= limit else 'no'} |")
    else:
        p(f"| {what} <= {limit} ms | not measured | no |")
p()

p("## Accuracy details (last run of each cell)")
p()
for key in sorted(cells, key=sort_key):
    a = cells[key]["acc"]
    sm = a.get("status_mismatches_by_class") or {}
    rm = a.get("reason_mismatches_by_class") or {}
    if not sm and (not rm or key[0] == "pharox"):
        continue
    p(f"- {key[0]} {key[1]} N={key[2]} C={key[3] or 'unbounded'}: status mismatches {json.dumps(sm)}" +
      ("" if key[0] == "pharox" else f"; reason mismatches {json.dumps(rm)}"))
p()

p("## Notes on the contenders")
p()
p("- **lean** (`bench/src/bin/lean.rs`): the limit. One attempt under one deadline, connect + handshake + GET + "
  "status line, each check a spawned task under `buffer_unordered(C)` (so both worker threads run checks), "
  "one small JSON line per result. No phases, no metrics. Against the HTTPS target: CONNECT or SOCKS, then "
  "a verified rustls handshake with one shared config (`lean` resumes sessions, `lean_nores` does not).")
p("- **ours**: `pharox-exporter sweep --once`, full result objects (phases, error text, timestamps) streamed "
  "to stdout, summary to stderr.")
p("- **pharox** (`bench/pharox_sweep.py`): `HealthChecker.stream_health_checks` from PyPI `pharox` with "
  "`httpx[socks]`, N=1000 only (it runs at ~10-15 checks/s and uses hundreds of MiB here). "
  "At equal concurrency its own HTTP strategy is wrapped in an `asyncio.Semaphore(C)`; `unbounded` is "
  "`stream_health_checks` as shipped (every check started at once). Each check builds a new "
  "`httpx.AsyncClient` (an SSL context each time), so pharox is CPU-bound: with many checks in "
  "flight the event loop falls behind, healthy proxies time out or cross the slow threshold, and its status "
  "accuracy collapses. pharox has no reasons, so only its statuses are scored. SOCKS4 proxy URLs make httpx "
  "raise `ValueError` (pharox catches only `httpx.HTTPError`), and a garbage SOCKS5 reply raises socksio's "
  "`ProtocolError`: either would end the whole `stream_health_checks` loop, so the wrapper turns them into "
  "status `error` (scored wrong).")
p()

p("## Exact commands (one per contender, from the last cell)")
p()
seen = set()
for key in sorted(cells, key=lambda k: (order.get(k[0], 9), -k[2])):
    if key[0] in seen:
        continue
    seen.add(key[0])
    p(f"- {key[0]}: `{cells[key]['cmd']}`")
p()
p("Harness: `sudo bench/run.sh` (env RUNS, SIZES, CONCS, TARGETS, STRACE, STRACE_N, PHAROX_SIZES, PHAROX_EXTRA_CONCS, PHAROX_UNBOUNDED, "
  "HEALTHY_SIZES, TIMEOUT_S, SLOW_MS, SLOW_DELAY_MS, EXPORTER_STAGE, EXPORTER_STAGES, EXPORTER_1M, KEEP_OUT; "
  "see the top of the script). Fleet: `target/release/fleet --addr 0.0.0.0 --in-netns "
  "--slow-delay-ms <SLOW_DELAY_MS> --ca-out bench/out/ca.pem` inside a fresh netns holding only `lo`.")

soak_csv = os.path.join(OUT, "soak", "samples.csv")
if os.path.exists(soak_csv):
    with open(soak_csv) as f:
        rows = list(csv.DictReader(f))

    def num(r, k):
        try:
            return float(r[k])
        except (KeyError, TypeError, ValueError):
            return float("nan")

    p("## Soak (bench/soak.sh)")
    p()
    p(f"Revision {read(os.path.join(OUT, 'soak', 'revision'), '?')}; {read(os.path.join(OUT, 'soak', 'knobs'))}. "
      "A fleet of which a third misbehaves, an inventory that churns (ids change address and behaviour; "
      "1,000 proxies leave and come back), a scrape every 5 s on a fresh connection, and idle connections "
      "held against the web port throughout (re-opened whenever the server closes them). One row per "
      "minute: medians of that minute's samples, and the slowest scrape. Flat RSS, fds and scrape times "
      "are the point.")
    p()
    p("| minute | samples | RSS MiB | open fds | scrape ms (median) | scrape ms (max) | sweeps done | INACTIVE |")
    p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    by_min = collections.defaultdict(list)
    for r in rows:
        by_min[int(num(r, "t_s") // 60)].append(r)
    for m in sorted(by_min):
        rs = by_min[m]
        scr = [num(r, "scrape_ms") for r in rs if num(r, "scrape_ms") == num(r, "scrape_ms")]
        p(f"| {m} | {len(rs)} | {med([num(r, 'rss_kib') / 1024 for r in rs]):.1f} | "
          f"{med([num(r, 'fds') for r in rs]):.0f} | {med(scr):.1f} | {max(scr) if scr else float('nan'):.1f} | "
          f"{rs[-1].get('sweeps', '')} | {rs[-1].get('inactive', '')} |")
    p()
    if rows:
        failed = sum(1 for r in rows if num(r, "scrape_bytes") == 0)
        p(f"Scrapes that failed or timed out (10 s): {failed} of {len(rows)}. "
          f"Final: {read(os.path.join(OUT, 'soak', 'final_rss.txt')).replace(chr(10), '; ')}.")
        p()
