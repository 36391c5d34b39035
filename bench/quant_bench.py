#!/usr/bin/env python3
"""Quantization benchmark: `lowbit quantize` of a model with each method (seconds,
bits per weight, size), then `lowbit perplexity` of the result (ctx 1024, every window unless -w) on
WikiText-2 test and on pocket-valid.txt, beside the unquantized model and, for pocket-llama, the
fake-quantized Transformers references of its README (the issue asks RTN/NF4 within 0.3% of them).

usage: bench/quant_bench.py [MODEL_DIR] [-w WINDOWS (0 = all)] [-t THREADS] [--bin build/lowbit]
                            [--only NAME ...] [--texts wiki valid] [--json OUT] [--keep DIR]
                            [--base wiki=PPL valid=PPL]

The quantize time is set beside `lowbit convert` of the same model (read + write of every tensor:
what the disk alone costs)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("LOWBIT_SHARED", os.path.join(HERE, "../../shared"))
ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?", default=os.path.join(SHARED, "models/pocket-llama-48m"))
ap.add_argument("-w", type=int, default=0)
ap.add_argument("-t", type=int, default=0)
ap.add_argument("--bin", default="build/lowbit")
ap.add_argument("--only", nargs="*")
ap.add_argument("--texts", nargs="*", default=["wiki", "valid"])
ap.add_argument("--json")
ap.add_argument("--keep")
ap.add_argument("--base", nargs="*", default=[],
                help="known unquantized perplexities (wiki=283.3286 valid=33.2717) instead of measuring")
a = ap.parse_args()
TEXTS = {"wiki": os.path.join(SHARED, "data/wikitext-2-raw/wiki.test.raw"),
         "valid": os.path.join(SHARED, "data/pocket-valid.txt")}
out = a.keep or tempfile.mkdtemp(prefix="lowbit-quant-")
os.makedirs(out, exist_ok=True)
CT = os.path.join(HERE, "ecosystem/configs/ct-fp8-channel.json")
CALIB = ["--calib", os.path.join(SHARED, "data/calibration/groups_merged.txt")]  # 128 x 512 tokens
# name, quantize flags, README reference (WikiText, pocket-valid) for pocket-llama
METHODS = [
    ("rtn int8 per-channel sym", ["--method", "rtn", "--bits", "8", "--group", "-1", "--sym"],
     (283.52, 33.26)),
    ("rtn int4 g128 asym", ["--method", "rtn", "--bits", "4", "--group", "128"], (286.93, 33.65)),
    ("rtn int4 g128 sym", ["--method", "rtn", "--bits", "4", "--group", "128", "--sym"],
     (292.51, 33.81)),
    ("rtn int4 g64 asym", ["--method", "rtn", "--bits", "4", "--group", "64"], None),
    ("rtn int4 g32 asym", ["--method", "rtn", "--bits", "4", "--group", "32"], (284.99, None)),
    ("rtn int4 per-channel asym", ["--method", "rtn", "--bits", "4", "--group", "-1"],
     (291.46, None)),
    ("rtn int3 g128 asym", ["--method", "rtn", "--bits", "3", "--group", "128"], (309.63, 35.61)),
    ("rtn int3 g64 asym", ["--method", "rtn", "--bits", "3", "--group", "64"], None),
    ("rtn int2 g64 asym", ["--method", "rtn", "--bits", "2", "--group", "64"], (493.61, 52.19)),
    ("ct int4 g128 asym", ["--method", "rtn", "--bits", "4", "--group", "128", "--format",
                           "compressed-tensors"], None),
    ("nf4 b64", ["--method", "nf4"], (287.13, 33.77)),
    ("nf4 b64 + double quant", ["--method", "nf4", "--double-quant"], None),
    ("fp4 b64", ["--method", "fp4"], None),
    ("fp4 b64 + double quant", ["--method", "fp4", "--double-quant"], None),
    ("LLM.int8 (threshold 6)", ["--method", "int8"], None),
    ("fp8 e4m3 per-channel (ct)", ["--config", CT], None),
    ("fp8 e4m3 128x128 blocks", ["--method", "fp8"], None),
    ("hqq 4-bit g64", ["--method", "hqq", "--bits", "4", "--group", "64"], None),
    ("hqq 3-bit g64", ["--method", "hqq", "--bits", "3", "--group", "64"], None),
    ("hqq 2-bit g64", ["--method", "hqq", "--bits", "2", "--group", "64"], None),
    ("gptq int4 g128 asym", ["--method", "gptq", "--bits", "4", "--group", "128", *CALIB], None),
    ("gptq int4 g128 asym act-order", ["--method", "gptq", "--bits", "4", "--group", "128",
                                       "--desc-act", *CALIB], None),
    ("gptq int3 g128 asym", ["--method", "gptq", "--bits", "3", "--group", "128", *CALIB], None),
    ("gptq int3 g128 asym act-order", ["--method", "gptq", "--bits", "3", "--group", "128",
                                       "--desc-act", *CALIB], None),
    ("gptq int2 g64 asym", ["--method", "gptq", "--bits", "2", "--group", "64", *CALIB], None),
    ("gptq int2 g64 asym act-order", ["--method", "gptq", "--bits", "2", "--group", "64",
                                      "--desc-act", *CALIB], None),
    ("awq int4 g128 gemm", ["--method", "awq", "--group", "128", *CALIB], None),
    ("awq int3 g128 (compressed-tensors)", ["--method", "awq", "--bits", "3", "--group", "128",
                                            "--format", "compressed-tensors", *CALIB], None),
    ("awq int2 g64 (compressed-tensors)", ["--method", "awq", "--bits", "2", "--group", "64",
                                           "--format", "compressed-tensors", *CALIB], None),
]


def run(args):
    t0 = time.time()
    p = subprocess.run([a.bin, *args], capture_output=True, text=True)
    return p, time.time() - t0


def ppl(model, text):
    args = ["perplexity", model, "-f", TEXTS[text], "--ctx", "1024", "--json"]
    if a.w:
        args += ["--max-windows", str(a.w)]
    if a.t:
        args += ["-t", str(a.t)]
    p, _ = run(args)
    if p.returncode:
        raise SystemExit(f"perplexity {model} failed: {p.stderr}")
    return json.loads(p.stdout)["ppl"]


rows = []
cvt = os.path.join(out, "convert")
shutil.rmtree(cvt, ignore_errors=True)
_, convert_s = run(["convert", a.model, cvt])
shutil.rmtree(cvt, ignore_errors=True)
known = dict((k, float(v)) for k, v in (b.split("=") for b in a.base))
base = {t: known[t] if t in known else ppl(a.model, t) for t in a.texts}
rows.append(dict(method="bf16 (unquantized)", bits=16.0, size_mb=None, seconds=convert_s,
                 ppl=base, ref=None))
print(f"model {a.model}; ctx 1024, {a.w or 'all'} windows; convert (disk) {convert_s:.2f} s; "
      + ", ".join(f"{t} bf16 ppl {v:.4f}" for t, v in base.items()), flush=True)
for name, flags, ref in METHODS:
    if a.only and not any(o == name for o in a.only):
        continue
    dst = os.path.join(out, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
    p, secs = run(["quantize", a.model, dst, "--force", *flags])
    if p.returncode != 0:
        rows.append(dict(method=name, error=p.stderr.strip()[:200]))
        print(json.dumps(rows[-1]), flush=True)
        continue
    bpw = float(re.search(r"bits per weight: ([0-9.]+)", p.stdout).group(1))
    size = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst)
               if f.endswith(".safetensors")) / 1e6
    rows.append(dict(method=name, bits=bpw, size_mb=size, seconds=secs,
                     ppl={t: ppl(dst, t) for t in a.texts},
                     ref=dict(zip(("wiki", "valid"), ref)) if ref else None))
    print(json.dumps(rows[-1]), flush=True)
    if not a.keep:
        shutil.rmtree(dst)


def cell(r, t):
    v = r["ppl"].get(t)
    s = f"{v:.3f} ({100 * (v / base[t] - 1):+.2f}%)"
    ref = (r.get("ref") or {}).get(t)
    return s + (f" | {ref:.2f} ({100 * (v / ref - 1):+.2f}%)" if ref else " | ")


print(f"\n| method | bits/weight (Linear) | size MB | quantize s | "
      + " | ".join(f"{t} ppl (vs bf16) | README ref (lowbit vs ref)" for t in a.texts) + " |")
print("|" + " --- |" * (4 + 2 * len(a.texts)))
for r in rows:
    if "error" in r:
        print(f"| {r['method']} | failed: {r['error'][:100]} |")
        continue
    size = f"{r['size_mb']:.1f}" if r["size_mb"] else ""
    print(f"| {r['method']} | {r['bits']:.3f} | {size} | {r['seconds']:.2f} | "
          + " | ".join(cell(r, t) for t in a.texts) + " |")
if a.json:
    json.dump(dict(model=a.model, windows=a.w or "all", threads=a.t, convert_s=convert_s, rows=rows),
              open(a.json, "w"), indent=1)
if not a.keep:
    shutil.rmtree(out)
