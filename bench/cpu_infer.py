#!/usr/bin/env python3
"""CPU inference benchmark: prefill (prompt processing) and decode tokens/s of `lowbit generate`, for
prompts of P tokens and N generated tokens (EOS ignored, greedy), R repetitions, mean +- sd; plus one
`lowbit perplexity` window rate. Prints a markdown table.

usage: bench/cpu_infer.py [MODEL_DIR] [-p 32,128,512] [-n 128] [-r 3] [-t THREADS] [--bin build/lowbit]
The prompt is the start of pocket-valid.txt cut to P tokens (ids from `lowbit tokenize`)."""
import argparse
import json
import os
import statistics
import subprocess

SHARED = os.environ.get("LOWBIT_SHARED", "../shared")
ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?", default=os.path.join(SHARED, "models/pocket-llama-48m"))
ap.add_argument("-p", default="32,128,512")
ap.add_argument("-n", type=int, default=128)
ap.add_argument("-r", type=int, default=3)
ap.add_argument("-t", type=int, default=0)
ap.add_argument("--bin", default="build/lowbit")
a = ap.parse_args()
threads = ["-t", str(a.t)] if a.t else []
text = open(os.path.join(SHARED, "data/pocket-valid.txt"), encoding="utf-8").read()


def prompt_of(p):
    """The longest prefix of the text (cut at a word) whose encoding, BOS included, is <= p tokens."""
    lo, hi = 1, min(len(text), p * 8)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        out = subprocess.run([a.bin, "tokenize", a.model, "-p", text[:mid], "--ids"],
                             capture_output=True, text=True, check=True).stdout.split()
        lo, hi = (mid, hi) if len(out) <= p else (lo, mid - 1)
    return text[:lo]


def stats(xs):
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.1f}"


print(f"model: {a.model}, threads: {a.t or os.cpu_count()}, decode: {a.n} tokens, {a.r} runs\n")
print("| prompt tokens | prefill tok/s | decode tok/s | peak RSS MB |")
print("| --- | --- | --- | --- |")
for p in map(int, a.p.split(",")):
    prompt = prompt_of(p)
    pre, dec, rss, ntok = [], [], [], 0
    for _ in range(a.r + 1):  # the first run warms the page cache and is dropped
        out = json.loads(subprocess.run(
            [a.bin, "generate", a.model, "-p", prompt, "-n", str(a.n), "--ignore-eos", "--json",
             "--ctx", "2048", *threads], capture_output=True, text=True, check=True).stdout)
        pre.append(out["prefill_tokens_per_s"]), dec.append(out["decode_tokens_per_s"])
        rss.append(out["peak_rss_bytes"] / 1e6)
        ntok = out["prefill_tokens"]
    print(f"| {ntok} | {stats(pre[1:])} | {stats(dec[1:])} | {max(rss):.0f} |")

ppl = json.loads(subprocess.run(
    [a.bin, "perplexity", a.model, "-f", os.path.join(SHARED, "data/wikitext-2-raw/wiki.test.raw"),
     "--ctx", "1024", "--max-windows", "8", "--json", *threads],
    capture_output=True, text=True, check=True).stdout)
print(f"\nperplexity, 8 windows of 1024 (logits of every position): "
      f"{ppl['tokens_per_s']:.0f} tokens/s")
