#!/usr/bin/env python3
"""Markdown tables (stdout) of a mixlens_cpu_bench JSON run: M steps/s of every
host scan policy per length, the flatness of the sequential scan, the threaded
speedups, and the S6 rows. With --benchmark_repetitions the medians are used.
Usage: bench/cpu_table.py bench/results/cpu/scans.json"""
import json
import re
import sys


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/cpu/scans.json"
    run = json.load(open(path))
    rate = {}  # (family, type, policy) -> {n: M items/s}
    benchmarks = run["benchmarks"]
    if any(b.get("aggregate_name") == "median" for b in benchmarks):
        benchmarks = [b for b in benchmarks if b.get("aggregate_name") == "median"]
    for b in benchmarks:
        if b.get("error_occurred"):
            print(f"error: {b['name']}: {b.get('error_message')}", file=sys.stderr)
            continue
        name = re.sub(r"(/manual_time)?(_median)?$", "", b["name"])
        m = re.match(r"^([^/]+)/(float|double)/(?:(.+)/)?(\d+)$", name)
        family, typ, policy, n = m.group(1), m.group(2), m.group(3) or "-", int(m.group(4))
        rate.setdefault((family, typ, policy), {})[n] = b["items_per_second"] / 1e6

    order = ["naive_loop", "unflushed_sequential", "sequential", "chunked_64", "blelloch", "time_parallel",
             "sequence_parallel"]

    def rank(key):
        policy = "naive_loop" if key[0] == "naive_loop" else key[2]
        base = policy.split("/")[0]
        threads = policy.split(":")[-1] if ":" in policy else ""
        return (order.index(base) if base in order else len(order), threads.startswith("all"), threads)

    for family in ("scan", "rows64"):
        for typ in ("float", "double"):
            cols = [k for k in rate if k[0] in (family, "naive_loop") and k[1] == typ]
            if family == "rows64":
                cols = [k for k in cols if k[0] == "rows64"]
            cols.sort(key=rank)
            lengths = sorted({n for k in cols for n in rate[k]})
            print(f"\n{family}, {typ}: M steps/s\n")
            print("| steps | " + " | ".join(("naive loop" if k[0] == "naive_loop" else k[2]) for k in cols) + " |")
            print("|---" * (len(cols) + 1) + "|")
            for n in lengths:
                cells = [f"{rate[k][n]:.0f}" if n in rate[k] else "–" for k in cols]
                print(f"| 2^{n.bit_length() - 1} | " + " | ".join(cells) + " |")

    print("\nsequential scan, max/min over 2^10..2^24 (M steps/s):")
    for typ in ("float", "double"):
        for policy in ("unflushed_sequential", "sequential"):
            r = rate[("scan", typ, policy)]
            print(f"  {typ} {policy}: 2^10 {r[1 << 10]:.0f}, 2^24 {r[1 << 24]:.0f}, "
                  f"min {min(r.values()):.0f}, max {max(r.values()):.0f}, "
                  f"min/first {min(r.values()) / r[1 << 10]:.2f}")

    print("\nthreaded speedups over threads:1 of the same policy:")
    for family, policy in (("scan", "time_parallel"), ("rows64", "sequence_parallel")):
        for typ in ("float", "double"):
            one = rate[(family, typ, f"{policy}/threads:1")]
            for key in sorted(k for k in rate if k[0] == family and k[1] == typ and k[2].startswith(policy + "/")):
                if key[2].endswith("threads:1"):
                    continue
                sp = ", ".join(f"2^{n.bit_length() - 1}: {rate[key][n] / one[n]:.2f}" for n in sorted(rate[key]))
                print(f"  {family} {typ} {key[2]}: {sp}")

    print("\nS6 on the host (time per call):")
    s6 = [b for b in benchmarks if b["name"].startswith("s6_")]
    key = lambda b: re.sub(r"_median$", "", b["name"]).split("/")
    for b in sorted(s6, key=lambda b: (key(b)[0], key(b)[1], "caller_ftz" in key(b), int(key(b)[-1]))):
        print(f"  {'/'.join(key(b))}: {b['real_time']:.2f} {b['time_unit']}")

if __name__ == "__main__":
    main()
