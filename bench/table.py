#!/usr/bin/env python3
"""Summarises gsbench results (and optionally peer results) as a Markdown
table, and writes the data file the SVG chart is drawn from.

Usage:
  bench/table.py OURS.jsonl [MORE.jsonl ...] [--peers PEERS.jsonl ...]
                 [--dat FILE] [--md FILE]

Every line of every file is one JSON result ({"runtime":..., "workload":...}).
Lines for the same runtime and workload (repeated runs, several files) are
reduced to their median: the passing run whose figure is the median one is
shown, and failed runs are counted beside it.

The figure per workload is a throughput, higher is better: ops_per_sec,
except for spawn, where it is spawn_per_sec (servers started per second).
The last column is genserver's figure divided by the best peer's (> 1: we
are faster). Exit status 1 if any genserver run failed its check.
"""
import json
import math
import sys

ORDER = ["call_rtt", "cast_fanin", "cast_fanin_threads", "ring", "ring_multi",
         "pingpong", "spawn", "timers", "timer_guard", "call_timeout", "server_call"]
OURS = "genserver"


def si(x):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def dur(ns):
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if abs(ns) >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.0f} ns"


def figure(r):
    """The throughput the table and chart compare, or None."""
    if r.get("check") in ("n/a", "timeout", "error") or "ops_per_sec" not in r:
        return None
    if r.get("workload") == "spawn" and "spawn_per_sec" in r:
        return float(r["spawn_per_sec"])
    return float(r["ops_per_sec"])


def unit(w):
    return {"call_rtt": "calls/s", "ring": "hops/s", "ring_multi": "hops/s",
            "pingpong": "msgs/s", "spawn": "spawns/s", "timers": "timers/s",
            "call_timeout": "calls/s", "server_call": "calls/s",
            "timer_guard": "arm+cancel/s"}.get(w, "msgs/s")


def cell(r, runs, failed=()):
    check = r.get("check", "?")
    f = figure(r)
    if f is None:
        return check
    w = r["workload"]
    parts = [f"**{si(f)}** {unit(w)}"]
    if w == "spawn":
        parts.append(f"total {r['seconds']:.3g} s (spawn {r['spawn_s']:.3g}, "
                     f"cast {r['cast_s']:.3g}, stop {r['stop_s']:.3g})")
    if "p50_ns" in r:
        label = {"timers": "lateness ", "call_timeout": "timeout lateness "}.get(w, "")
        parts.append(f"{label}p50 {dur(r['p50_ns'])}, p99 {dur(r['p99_ns'])}")
    if w == "server_call" and "call_rtt_ns" in r:
        parts.append(f"hot round trip {dur(r['call_rtt_ns'])} (casts {dur(r['cast_rtt_ns'])}); "
                     f"cast round trips {si(r['cast_rtt_per_sec'])}/s, suspension cost "
                     f"{r['suspension_cost']:.2f}x")
    if w == "timer_guard" and "process_cpu_ns_per_op" in r:
        parts.append(f"CPU per arm+cancel: arming thread {dur(r['arming_cpu_ns_per_op'])}, "
                     f"whole process {dur(r['process_cpu_ns_per_op'])}")
    if w == "call_timeout" and "callers_are" in r:
        parts.append(f"callers: {r['callers_are']}")
    if "bytes_per_server" in r:
        parts.append(f"{r['bytes_per_server']:.0f} B/server")
    if runs > 1:
        parts.append(f"median of {runs}")
    if check != "ok":
        parts.append(check)
    if failed and not is_failure(r):
        parts.append(f"{len(failed)} other run(s) failed: {failed[0].get('check')}")
    return "; ".join(parts)


def load(paths):
    groups = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                groups.setdefault((r.get("runtime"), r.get("workload")), []).append(r)
    return groups


def is_failure(r):
    return str(r.get("check", "")).startswith("FAIL") or r.get("check") in ("error", "timeout")


def median_run(runs):
    """The run with the median figure (the lower median) among the runs
    that passed their check; the failed runs are reported beside it."""
    ok = [r for r in runs if not is_failure(r)]
    scored = sorted((figure(r), i) for i, r in enumerate(ok) if figure(r) is not None)
    if not scored:
        failed = [r for r in runs if is_failure(r)]
        return failed[0] if failed else runs[0]
    return ok[scored[(len(scored) - 1) // 2][1]]


def main(argv):
    ours, peers, dat, md = [], [], None, None
    i, target = 0, ours
    while i < len(argv):
        a = argv[i]
        if a == "--peers":
            target = peers
        elif a in ("--dat", "--md"):
            i += 1
            if a == "--dat":
                dat = argv[i]
            else:
                md = argv[i]
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            target.append(a)
        i += 1
    if not ours:
        print(__doc__, file=sys.stderr)
        return 2

    groups = load(ours + peers)
    runtimes = [OURS] + sorted({rt for rt, _ in groups if rt != OURS and rt != "genserver-micro"})
    if not any(rt == OURS for rt, _ in groups):
        runtimes = runtimes[1:]
    workloads = [w for w in ORDER if any(k[1] == w for k in groups)]
    workloads += sorted({w for rt, w in groups if w not in workloads and rt != "genserver-micro"})
    best = {(rt, w): median_run(groups[rt, w]) for rt, w in groups}
    has_peers = len(runtimes) > 1

    head = ["workload"] + runtimes + (["ours / best peer"] if has_peers else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    failed = False
    for w in workloads:
        cells = []
        for rt in runtimes:
            r = best.get((rt, w))
            runs = groups.get((rt, w), [])
            bad = [x for x in runs if is_failure(x)]
            n = sum(1 for x in runs if figure(x) is not None and not is_failure(x))
            cells.append(cell(r, n, bad) if r else "")
            if rt == OURS and bad:
                failed = True
        if has_peers:
            mine = figure(best[OURS, w]) if (OURS, w) in best else None
            theirs = [(figure(best[rt, w]), rt) for rt in runtimes[1:]
                      if (rt, w) in best and figure(best[rt, w]) is not None]
            if mine is not None and theirs:
                f, rt = max(theirs)
                cells.append(f"{mine / f:.2f}x ({rt})")
            else:
                cells.append("")
        out.append(f"| {w} | " + " | ".join(cells) + " |")
    text = "\n".join(out)
    print(text)
    if md:
        with open(md, "w") as f:
            f.write(text + "\n")
    if dat:
        # one row per workload, one column per runtime; NaN where missing
        with open(dat, "w") as f:
            f.write("workload " + " ".join(runtimes) + "\n")
            for w in workloads:
                vals = []
                for rt in runtimes:
                    v = figure(best[rt, w]) if (rt, w) in best else None
                    vals.append("NaN" if v is None or v <= 0 or math.isnan(v) else f"{v:.6g}")
                f.write(w + " " + " ".join(vals) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
