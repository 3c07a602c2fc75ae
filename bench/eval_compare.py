#!/usr/bin/env python3
"""Compares two mixlens-eval outputs (faithfulness.json) number by number.

    python3 bench/eval_compare.py A/faithfulness.json B/faithfulness.json

Per method: whether every sequence has the same target, the largest difference of the
per-sequence curves (logit and probability) relative to the largest |value| of A's, and ΔA^F
(logit) of both. Exits 1 when the targets differ or a file lacks a method of the other.
"""
import json
import sys


def curves(entry):
    for order in ("morf", "lerf"):
        for quantity in ("logit", "probability"):
            yield quantity, entry[order][quantity]


def main(a_path, b_path):
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    if set(a["methods"]) != set(b["methods"]):
        print(f"methods differ: {sorted(a['methods'])} vs {sorted(b['methods'])}")
        return 1
    status = 0
    print("| method | same targets | max rel. diff, logit curves | max rel. diff, probability curves "
          "| ΔA^F logit (A) | ΔA^F logit (B) |")
    print("|---|---|---|---|---|---|")
    for name, ma in a["methods"].items():
        mb = b["methods"][name]
        same = all((x["position"], x["token"]) == (y["position"], y["token"])
                   for x, y in zip(ma["per_sequence"], mb["per_sequence"]))
        status |= 0 if same else 1
        worst = {"logit": 0.0, "probability": 0.0}
        for x, y in zip(ma["per_sequence"], mb["per_sequence"]):
            for (quantity, cx), (_, cy) in zip(curves(x), curves(y)):
                scale = max(abs(v) for v in cx) or 1.0
                worst[quantity] = max(worst[quantity], max(abs(u - v) for u, v in zip(cx, cy)) / scale)
        print(f"| {name} | {'yes' if same else 'NO'} | {worst['logit']:.2e} | {worst['probability']:.2e} "
              f"| {ma['delta_logit']:.4f} | {mb['delta_logit']:.4f} |")
    return status


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
