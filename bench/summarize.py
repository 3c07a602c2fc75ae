#!/usr/bin/env python3
"""Reads the Google Benchmark JSON and the PyTorch baseline JSON of one GPU run
and writes bench/results/h200-summary.json plus a Markdown table (stdout)."""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gbench", default="bench/results/h200-gbench.json")
    ap.add_argument("--torch", default="bench/results/h200-torch.json")
    ap.add_argument("--out", default="bench/results/h200-summary.json")
    ap.add_argument("--date", default="2026-11-28")
    ap.add_argument("--command", default="bench/run_h200.sh <binaries> bench/results")
    args = ap.parse_args()
    g = {b["name"]: b for b in json.load(open(args.gbench))["benchmarks"]}
    t = {r["name"]: r for r in json.load(open(args.torch))["results"]}
    ms = lambda name: g[name]["real_time"]  # manual time, unit ms
    frac = lambda name: g[name]["fraction_of_copy_bw"]

    speedups = {}
    for l in (1024, 4096, 16384, 65536):
        speedups[l] = t[f"torch_fftconv_fp32_b1_d768_l{l}"]["ms"] / ms(f"fftconv/1/768/{l}/manual_time")
    summary = {
        "date": args.date,
        "gpu": json.load(open(args.torch))["device"],
        "command": args.command,
        "s6_fwd_fp32_b4_d1536_l2048_n16_ms": ms("s6_forward_fp32/4/1536/2048/manual_time"),
        "s6_fwd_fp32_b1_d1536_l65536_n16_ms": ms("s6_forward_fp32/1/1536/65536/manual_time"),
        "s6_fwd_bf16_b4_d1536_l2048_n16_ms": ms("s6_forward_bf16/4/1536/2048/manual_time"),
        "alpha_fp32_d1536_l1024_n16_ms": ms("alpha_full_fp32/1536/1024/manual_time"),
        "torch_alpha_fp32_d1536_l1024_n16_ms": t["torch_alpha_fp32_d1536_l1024_n16"]["ms"],
        "scan_best_fraction_of_copy_bw": frac("scan<gpu::block_policy>/4096/65536/manual_time"),
        "hyena_fftconv_min_speedup_vs_torch": min(speedups.values()),
        "copy_bandwidth_bytes_per_s": g["copy/2048/manual_time"]["copy_bw"],
    }
    # The one-pass kernels on the long sequence (before the time-parallel path), same run.
    onepass = "s6_forward_fp32_onepass/1/1536/65536/manual_time"
    if onepass in g:
        summary["s6_fwd_fp32_b1_d1536_l65536_n16_onepass_ms"] = ms(onepass)
    for k in (1024, 2048, 4096, 8192, 16384):
        key = f"s6_forward_fp32_chunk/1/1536/65536/{k}/manual_time"
        if key in g:
            summary.setdefault("s6_fwd_fp32_b1_d1536_l65536_n16_ms_by_chunk", {})[k] = ms(key)
    json.dump(summary, open(args.out, "w"), indent=1)

    rows = [
        ("S6 fwd fp32, B4 D1536 L2048 N16", "s6_forward_fp32/4/1536/2048", "torch_s6_fwd_fp32_b4_d1536_l2048_n16",
         "s6_forward_fp32_naive/4/1536/2048/iterations:5"),
        ("S6 fwd fp32, B4 D1536 L8192 N16", "s6_forward_fp32/4/1536/8192", "torch_s6_fwd_fp32_b4_d1536_l8192_n16",
         "s6_forward_fp32_naive/4/1536/8192/iterations:5"),
        ("S6 fwd fp32, B1 D1536 L65536 N16", "s6_forward_fp32/1/1536/65536", "torch_s6_fwd_fp32_b1_d1536_l65536_n16",
         "s6_forward_fp32_naive/1/1536/65536/iterations:5"),
        ("S6 fwd fp32, B1 D1536 L65536 N16, one pass over time", "s6_forward_fp32_onepass/1/1536/65536",
         "torch_s6_fwd_fp32_b1_d1536_l65536_n16", None),
        ("S6 fwd bf16, B4 D1536 L2048 N16", "s6_forward_bf16/4/1536/2048", "torch_s6_fwd_bf16_b4_d1536_l2048_n16", None),
        ("full α fp32, D1536 L512 N16", "alpha_full_fp32/1536/512", "torch_alpha_fp32_d1536_l512_n16",
         "alpha_full_naive/1536/512/iterations:5"),
        ("full α fp32, D1536 L1024 N16", "alpha_full_fp32/1536/1024", "torch_alpha_fp32_d1536_l1024_n16",
         "alpha_full_naive/1536/1024/iterations:5"),
    ] + [(f"Hyena FFT conv fp32, D768 L{l}", f"fftconv/1/768/{l}", f"torch_fftconv_fp32_b1_d768_l{l}",
          f"direct_conv/1/768/{l}/iterations:3" if l <= 16384 else None) for l in (1024, 4096, 16384, 65536)]
    print("| work | mixlens (ms) | fraction of copy BW | PyTorch (ms) | straightforward GPU kernel (ms) |")
    print("|---|---|---|---|---|")
    for label, name, tname, base in rows:
        if name + "/manual_time" not in g:
            continue
        b = f"{ms(base + '/manual_time'):.3f}" if base else "–"
        print(f"| {label} | {ms(name + '/manual_time'):.3f} | {frac(name + '/manual_time'):.2f} | {t[tname]['ms']:.3f} | {b} |")
    print()
    print("| scan variant (fp32, 12 B/element) | 4096 × 65536 (2^28) ms | fraction | 98304 × 2048 ms | fraction | 1 × 2^28 ms | fraction |")
    print("|---|---|---|---|---|---|---|")
    for pol in ("sequential", "warp", "blelloch", "block", "device", "chunked"):
        cells = []
        for shape in ("4096/65536", "98304/2048", "1/268435456"):
            key = next((k for k in g if k.startswith(f"scan<gpu::{pol}_policy>/{shape}/")), None)
            cells += [f"{ms(key):.3f}", f"{frac(key):.2f}"] if key else ["–", "–"]
        print(f"| {pol} | " + " | ".join(cells) + " |")
    print()
    print("summary:", json.dumps(summary))


if __name__ == "__main__":
    main()
