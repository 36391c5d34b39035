#!/usr/bin/env python3
"""Quantization benchmark: `lowbit quantize` of a model with each calibration-free method (seconds,
bits per weight, size), then `lowbit perplexity` of the result on WikiText-2 (ctx 1024, the first W
windows or all), next to the unquantized model. Prints a markdown table.

usage: bench/quant_bench.py [MODEL_DIR] [-w WINDOWS (0 = all)] [--bin build/lowbit] [--keep DIR]"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

SHARED = os.environ.get("LOWBIT_SHARED", "../shared")
ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?", default=os.path.join(SHARED, "models/pocket-llama-48m"))
ap.add_argument("-w", type=int, default=8)
ap.add_argument("--bin", default="build/lowbit")
ap.add_argument("--keep")
a = ap.parse_args()
wiki = os.path.join(SHARED, "data/wikitext-2-raw/wiki.test.raw")
out = a.keep or tempfile.mkdtemp(prefix="lowbit-quant-")
METHODS = [("rtn int8 per-channel sym", ["--method", "rtn", "--bits", "8", "--group", "-1", "--sym"]),
           ("rtn int4 g128 asym", ["--method", "rtn", "--bits", "4", "--group", "128"]),
           ("rtn int4 g64 asym", ["--method", "rtn", "--bits", "4", "--group", "64"]),
           ("rtn int3 g128 asym", ["--method", "rtn", "--bits", "3", "--group", "128"]),
           ("nf4 b64", ["--method", "nf4"]),
           ("nf4 b64 + double quant", ["--method", "nf4", "--double-quant"]),
           ("LLM.int8", ["--method", "int8"]),
           ("fp8 e4m3", ["--method", "fp8"]),
           ("hqq 4-bit g64", ["--method", "hqq", "--bits", "4", "--group", "64"]),
           ("hqq 3-bit g64", ["--method", "hqq", "--bits", "3", "--group", "64"])]


def ppl(model):
    args = [a.bin, "perplexity", model, "-f", wiki, "--ctx", "1024", "--json"]
    if a.w:
        args += ["--max-windows", str(a.w)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["ppl"]


base = ppl(a.model)
print(f"model: {a.model}; WikiText-2 ctx 1024, {a.w or 'all'} windows; bf16 ppl {base:.3f}\n")
print("| method | bits/weight (Linear) | size MB | quantize s | ppl | vs bf16 |")
print("| --- | --- | --- | --- | --- | --- |")
for name, flags in METHODS:
    dst = os.path.join(out, re.sub(r"[^a-z0-9]+", "-", name.lower()))
    t0 = time.time()
    p = subprocess.run([a.bin, "quantize", a.model, dst, "--force", *flags], capture_output=True,
                       text=True)
    secs = time.time() - t0
    if p.returncode != 0:
        print(f"| {name} | failed: {p.stderr.strip()[:80]} | | | | |")
        continue
    bpw = re.search(r"bits per weight: ([0-9.]+)", p.stdout).group(1)
    size = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst)
               if f.endswith(".safetensors")) / 1e6
    v = ppl(dst)
    print(f"| {name} | {bpw} | {size:.1f} | {secs:.1f} | {v:.3f} | {100 * (v / base - 1):+.2f}% |")
if not a.keep:
    shutil.rmtree(out)
