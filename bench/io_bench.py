#!/usr/bin/env python3
"""I/O benchmark: `lowbit inspect` (map + validate + report) and `lowbit convert` (single file and
sharded) on a checkpoint, R repetitions each, mean +- sd, as a markdown table.

usage: bench/io_bench.py [MODEL_DIR] [-r R] [--bin build/lowbit]
The output folders go to a temporary folder on the same disk as /tmp; the page cache is warm after the
first repetition (the numbers are for data in memory, the case when a model was just downloaded)."""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?", default=os.path.join(os.environ.get("LOWBIT_SHARED", "../shared"),
                                                          "models/pocket-llama-48m"))
ap.add_argument("-r", type=int, default=5)
ap.add_argument("--bin", default="build/lowbit")
a = ap.parse_args()
size = sum(os.path.getsize(os.path.join(a.model, f)) for f in os.listdir(a.model) if f.endswith(".safetensors"))
tmp = tempfile.mkdtemp(prefix="lowbit-bench-")


def timed(args, out=None):
    ts = []
    for _ in range(a.r + 1):  # the first run warms the page cache and is dropped
        if out:
            shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run([a.bin, *args], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "LOWBIT_PROGRESS": "0"})
        ts.append(time.perf_counter() - t)
    return ts[1:]


rows = [("inspect", timed(["inspect", a.model])),
        ("convert (one file)", timed(["convert", a.model, f"{tmp}/one"], f"{tmp}/one")),
        ("convert (--shard-size 20MB)", timed(["convert", a.model, f"{tmp}/sh", "--shard-size", "20MB"], f"{tmp}/sh")),
        ("convert --dtype f16", timed(["convert", a.model, f"{tmp}/f16", "--dtype", "f16"], f"{tmp}/f16"))]
shutil.rmtree(tmp)
print(f"model: {a.model} ({size / 1e6:.1f} MB of safetensors), {a.r} repetitions, {os.cpu_count()} cores\n")
print("| command | seconds (mean ± sd) | MB/s of input |")
print("| --- | --- | --- |")
for name, ts in rows:
    m, sd = statistics.mean(ts), statistics.stdev(ts) if len(ts) > 1 else 0.0
    print(f"| {name} | {m:.3f} ± {sd:.3f} | {size / 1e6 / m:.0f} |")
