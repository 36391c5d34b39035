#!/usr/bin/env python3
"""Weight error of quantized checkpoints against their source, from lowbit's own reading of the
files (`lowbit-dump dequant`): relative L2 error and the rms of the per-group mean error (the part of
the error that adds coherently along a row) for a few Linear layers.

usage: bench/quant_error.py SRC_MODEL QUANT_DIR [QUANT_DIR ...] [--dump build/lowbit-dump] [--group 64]"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/py"))
from st_numpy import load_file  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("quant", nargs="+")
ap.add_argument("--dump", default="build/lowbit-dump")
ap.add_argument("--group", type=int, default=64)
a = ap.parse_args()
LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.5.mlp.down_proj",
          "model.layers.9.mlp.up_proj"]
src = load_file(os.path.join(a.src, "model.safetensors"))
print("| checkpoint | layer | rel L2 | group-mean error rms | element error rms |")
print("| --- | --- | --- | --- | --- |")
for q in a.quant:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([a.dump, "dequant", q, d], check=True, capture_output=True)
        for m in LAYERS:
            w = src[m + ".weight"].astype(np.float64)
            e = np.load(os.path.join(d, m + ".npy")).astype(np.float64) - w
            g = e.reshape(e.shape[0], -1, a.group).mean(-1)
            print(f"| {os.path.basename(q.rstrip('/'))} | {m} | {np.linalg.norm(e) / np.linalg.norm(w):.5f} "
                  f"| {np.sqrt((g ** 2).mean()):.3e} | {np.sqrt((e ** 2).mean()):.3e} |")
