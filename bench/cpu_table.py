#!/usr/bin/env python3
"""Markdown tables (stdout) of a mixlens_cpu_bench JSON run: M steps/s of every
host scan policy per length, the flatness of the sequential scan, the threaded
speedups, and the S6 rows. With --benchmark_repetitions the medians are used.
Usage: bench/cpu_table.py bench/results/cpu/scans.json

With --baselines, the host apply rows (host_apply/<op>/..., threads 1, 2, all)
and a side-by-side table of mixlens against the numpy / PyTorch / transformers
CPU baselines of bench/cpu_baselines.py on the same shapes (ms; ratio =
baseline / mixlens):
  bench/cpu_table.py bench/results/cpu/host_ops.json --baselines bench/results/cpu/baselines.json"""
import json
import re
import sys


def medians_ms(path):
    """{name: ms}: the medians of a Google Benchmark JSON (or every run without
    aggregates), names without the _median, /real_time, /manual_time and
    /iterations:N suffixes."""
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
    benchmarks = json.load(open(path))["benchmarks"]
    if any(b.get("aggregate_name") == "median" for b in benchmarks):
        benchmarks = [b for b in benchmarks if b.get("aggregate_name") == "median"]
    out = {}
    for b in benchmarks:
        name = re.sub(r"_median$", "", b["name"])
        name = re.sub(r"/(real_time|manual_time|iterations:\d+)", "", name)
        out[name] = b["real_time"] * scale[b["time_unit"]]
    return out


def fmt(ms):
    return "–" if ms is None else f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def compare(path, baseline_path):
    ours, base = medians_ms(path), medians_ms(baseline_path)
    def all_threads(prefix, length):
        return next((k for k in ours if k.startswith(prefix) and "threads:all" in k and k.endswith(f"/{length}")), None)

    print("\nhost apply, ms per call (medians), speedup = threads 1 / threads 2\n")
    print("| operator (shape: bench/host_ops_bench.cpp) | threads 1 | threads 2 | all | speedup at 2 |")
    print("|---|---|---|---|---|")
    ops = sorted({k.split("/")[1] for k in ours if k.startswith("host_apply/")}, key=lambda o: min(
        i for i, k in enumerate(ours) if k.startswith(f"host_apply/{o}/")))
    for op in ops:
        row = {k.split("/")[3].split(":")[1].split("(")[0]: v for k, v in ours.items() if k.startswith(f"host_apply/{op}/")}
        length = next(k.split("/")[-1] for k in ours if k.startswith(f"host_apply/{op}/"))
        print(f"| {op}, L {length} | {fmt(row.get('1'))} | {fmt(row.get('2'))} | {fmt(row.get('all'))} | "
              f"{row['1'] / row['2']:.2f}× |")

    # (work, mixlens one thread, mixlens all threads or None, [baselines])
    pairs = []
    for length in (1024, 16384):
        pairs.append((f"S6 apply, D 16, N 16, L {length}", f"s6_apply/float/fused_sequential/{length}",
                      all_threads("s6_apply/float/channel_parallel/", length),
                      [f"numpy/s6_apply/float/{length}", f"torch/s6_apply/float/{length}"]))
    for length in (512, 1024, 2048):
        pairs.append((f"full α of one channel, N 16, L {length}", f"s6_alpha_full/float/{length}", None,
                      [f"torch/s6_alpha_full/float/{length}"]))
    pairs.append(("causal conv (FFT), D 768, L 1024, L taps", "host_apply/causal_conv_fft/float/threads:1/1024",
                  all_threads("host_apply/causal_conv_fft/float/", 1024), ["torch/causal_conv_fft/float/1024"]))
    pairs.append(("Mamba-130m-sized, L 128: mixlens forward + α maps + raw + rollout", None,
                  "cpu_model_maps/mamba130m/direct/128",
                  ["transformers/mamba130m/forward/128", "transformers/mamba130m/forward_alpha/128"]))
    print("\nmixlens against the CPU baselines, ms (medians; ratio = baseline / mixlens, best of its columns)\n")
    print("| work | mixlens, 1 thread | mixlens, all threads | baseline | baseline ms | ratio |")
    print("|---|---|---|---|---|---|")
    for work, one, every, baselines in pairs:
        a, b = ours.get(one) if one else None, ours.get(every) if every else None
        best = min(v for v in (a, b) if v is not None)
        for name in baselines:
            if name not in base:
                continue
            print(f"| {work} | {fmt(a)} | {fmt(b)} | {name.split('/')[0]} `{'/'.join(name.split('/')[1:-1])}` | "
                  f"{fmt(base[name])} | {base[name] / best:.1f}× |")
    for name, ms in base.items():
        if "alpha_masked_exp" in name:
            print(f"\n{name}: {fmt(ms)} ms (one run)")


def main():
    if "--baselines" in sys.argv:
        i = sys.argv.index("--baselines")
        compare(sys.argv[1] if i != 1 else "bench/results/cpu/host_ops.json", sys.argv[i + 1])
        return
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
