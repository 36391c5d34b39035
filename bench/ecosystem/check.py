#!/usr/bin/env python3
"""Ecosystem round trip on the GPU machine: do the reference packages read lowbit's checkpoints, and
does lowbit read theirs, with the same numbers?

  python3 bench/ecosystem/check.py --lowbit BUILD_DIR --model POCKET_DIR --text wiki.test.raw \
      --work /tmp/eco/work --out OUTDIR [--only NAME ...] [--windows K] [--calib FILE]

Direction 1, lowbit -> ecosystem: `lowbit quantize` writes each layout below; Transformers (with
bitsandbytes, hqq, compressed-tensors installed) loads the folder as a user would, with no
quantization_config passed in. The calibrated layouts (GPTQ v1 / gptq_v2 / desc_act / 3-bit, AWQ
gemm / gemv, `lowbit quantize --method gptq|awq --calib`) are read by gptqmodel / autoawq where
installed, else by gptq_awq_ref.py's independent dequantizers into a dense fp32 Transformers model.
Direction 2, ecosystem -> lowbit: Transformers quantizes the bf16 model with the reference package
(BitsAndBytesConfig, HqqConfig, FineGrainedFP8Config) and save_pretrained() writes it; lowbit loads that.

For every checkpoint, both sides read the same files and are compared three ways:
  weights  each decoder Linear as the reference package dequantizes it (bnb dequantize_4bit /
           int8_vectorwise_dequant, HQQLinear.dequantize, compressed-tensors' decompression, the
           FP8 tensors as Transformers loaded them) against `lowbit-dump dequant` of the same folder;
  logits   4 sequences x 256 WikiText tokens, Transformers (GPU, fp32 activations where the layer
           allows, TF32 off) against `lowbit-dump logits` (CPU, fp32);
  ppl      `lowbit perplexity --max-windows K` against the same protocol in Transformers.
Results: OUTDIR/ecosystem.md (table) and OUTDIR/ecosystem.json."""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback

import warnings

import numpy as np
import torch
from tokenizers import Tokenizer

warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")

ap = argparse.ArgumentParser()
ap.add_argument("--lowbit", required=True, help="build folder with lowbit and lowbit-dump")
ap.add_argument("--model", required=True)
ap.add_argument("--text", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--windows", type=int, default=24)
ap.add_argument("--only", nargs="*")
ap.add_argument("--calib", help="calibration text of the GPTQ / AWQ entries (default: --text)")
a = ap.parse_args()
a.calib = a.calib or a.text

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
LB = os.path.join(a.lowbit, "lowbit")
DUMP = os.path.join(a.lowbit, "lowbit-dump")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gptq_awq_ref  # noqa: E402  (independent GPTQ / AWQ dequantizers: the reference where the
                     # packages gptqmodel / autoawq are not installed)
os.makedirs(a.work, exist_ok=True)
os.makedirs(a.out, exist_ok=True)
MODS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def sh(*cmd):
    t = time.time()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout, time.time() - t


# ---- token ids ------------------------------------------------------------------------------------
tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
ids = tok.encode(open(a.text, "rb").read().decode("utf-8", "replace")).ids
SEQ, NSEQ = 256, 4
seqs = [ids[i * 20000:i * 20000 + SEQ] for i in range(NSEQ)]
seqs = [[1] + s[1:] for s in seqs]  # each sequence starts with BOS, as a prompt would
ids_file = os.path.join(a.work, "ids.txt")
with open(ids_file, "w") as f:
    for s in seqs:
        f.write(" ".join(map(str, s)) + "\n")
N = 1024
windows = [ids[w * N:(w + 1) * N + 1] for w in range(min(a.windows, (len(ids) - 1) // N))]


# ---- the reference side ---------------------------------------------------------------------------
def load_hf(path, **kw):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, device_map="cuda", **kw).eval()


@torch.no_grad()
def ref_weight(m):
    """The dequantized weight of one Linear as its own package computes it, in the dtype it returns
    (bitsandbytes: the quant_state's dtype; HQQ: its compute dtype), on the CPU."""
    name = type(m).__name__
    if hasattr(m, "qweight"):  # a gptqmodel / autoawq QuantLinear (package loader path)
        return gptq_awq_ref.package_weight(m, m.eco_qc)
    if name == "Linear4bit":
        import bitsandbytes.functional as F
        return F.dequantize_4bit(m.weight.data, m.weight.quant_state).cpu()
    if name == "Linear8bitLt":
        import bitsandbytes.functional as F
        return F.int8_vectorwise_dequant(m.weight.CB, m.weight.SCB).cpu()
    if name == "HQQLinear":
        return m.dequantize().cpu()
    if hasattr(m, "weight_scale_inv"):  # Transformers' FP8Linear (fine-grained, block scales)
        w = m.weight.float()
        s = m.weight_scale_inv.float()
        br, bc = -(-w.shape[0] // s.shape[0]), -(-w.shape[1] // s.shape[1])
        s = s.repeat_interleave(br, 0)[:w.shape[0]].repeat_interleave(bc, 1)[:, :w.shape[1]]
        return (w * s).cpu()
    if hasattr(m, "weight_scale") and m.weight.dtype == torch.float8_e4m3fn:
        return (m.weight.float() * m.weight_scale.float()).cpu()
    return m.weight.detach().cpu()  # decompressed by the package at load time (compressed-tensors)


def hf_logits(model):
    out = []
    with torch.no_grad():
        for s in seqs:  # one sequence per call: LLM.int8 picks outlier columns per call, as lowbit
            out.append(model(torch.tensor([s]).cuda()).logits[0].float().cpu().numpy())
    return np.stack(out)


def hf_ppl(model):
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            lp = torch.log_softmax(model(torch.tensor([w[:N]]).cuda()).logits[0].float(), -1)
            tgt = torch.tensor(w[1:N + 1]).cuda()
            total += float(-lp[torch.arange(len(tgt)).cuda(), tgt].double().sum())
            count += len(tgt)
    return math.exp(total / count)


def lowbit_side(path):
    npy = os.path.join(a.work, "lb-logits.npy")
    sh(DUMP, "logits", path, ids_file, npy)
    dq = os.path.join(a.work, "lb-dequant")
    shutil.rmtree(dq, ignore_errors=True)
    sh(DUMP, "dequant", path, dq)
    out, _ = sh(LB, "perplexity", path, "-f", a.text, "--ctx", N, "--max-windows", len(windows),
                "--json")
    return np.load(npy), dq, json.loads(out)["ppl"]


def compare(name, direction, path, model, note):
    lb_logits, dq, lb_ppl = lowbit_side(path)
    worst, nmods, exact, dtypes = 0.0, 0, 0, set()
    for i, layer in enumerate(model.model.layers):
        for mod in MODS:
            m = layer.get_submodule(mod)
            ref = ref_weight(m)
            dtypes.add(str(ref.dtype).replace("torch.", ""))
            # lowbit dequantizes in fp32; rounded once to the dtype the reference returns
            mine = torch.from_numpy(np.load(os.path.join(dq, f"model.layers.{i}.{mod}.npy")))
            mine = mine.to(ref.dtype).float().numpy()
            ref = ref.float().numpy()
            if ref.shape != mine.shape:
                raise RuntimeError(f"model.layers.{i}.{mod}: shape {ref.shape} vs lowbit {mine.shape}")
            d = float(np.abs(ref - mine).max() / np.abs(ref).max())
            worst = max(worst, d)
            nmods += 1
            exact += bool((ref == mine).all())
    ref_logits = hf_logits(model)
    rel = float(np.linalg.norm(ref_logits - lb_logits) / np.linalg.norm(ref_logits))
    top1 = float((ref_logits.argmax(-1) == lb_logits.argmax(-1)).mean())
    ref_ppl = hf_ppl(model)
    qc = json.load(open(os.path.join(path, "config.json")))["quantization_config"]
    r = dict(name=name, direction=direction, note=note, linears=nmods, weights_exact=exact,
             ref_weight_dtype="/".join(sorted(dtypes)), quantization_config=qc,
             weight_max_rel=worst, logits_rel_l2=rel, top1_agree=top1, ppl_lowbit=lb_ppl,
             ppl_ref=ref_ppl, ppl_rel=abs(lb_ppl - ref_ppl) / ref_ppl,
             size_mb=sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 1e6)
    print(json.dumps(r), flush=True)
    return r


# ---- what is checked ------------------------------------------------------------------------------
def cfg(name):
    return os.path.join(HERE, "configs", name)


LOWBIT_WRITES = [  # name, lowbit quantize arguments, how Transformers computes with it
    ("nf4", ["--method", "nf4"], "bnb Linear4bit, fp32 compute"),
    ("nf4-dq", ["--method", "nf4", "--double-quant"], "bnb Linear4bit, fp32 compute"),
    ("fp4", ["--method", "fp4"], "bnb Linear4bit, fp32 compute"),
    ("int8", ["--method", "int8"], "bnb Linear8bitLt: int8 x int8 + fp outlier columns"),
    ("fp8-block", ["--method", "fp8"], "FineGrainedFP8Config(dequantize=True): fp32 compute"),
    ("ct-fp8-channel", ["--config", cfg("ct-fp8-channel.json")], "compressed-tensors"),
    ("ct-int4-g128", ["--method", "rtn", "--bits", "4", "--group", "128", "--format",
                      "compressed-tensors"], "compressed-tensors pack-quantized"),
    ("ct-int8-channel", ["--method", "rtn", "--bits", "8", "--group", "-1", "--sym", "--format",
                         "compressed-tensors"], "compressed-tensors pack-quantized"),
    ("hqq4-g64", ["--method", "hqq", "--bits", "4", "--group", "64"],
     "hqq's HQQLinear.load_state_dict, bf16 compute"),
    ("hqq3-g64", ["--method", "hqq", "--bits", "3", "--group", "64"],
     "hqq's HQQLinear.load_state_dict, bf16 compute"),
]

# The calibrated methods, with a small calibration (seconds). Reference side: gptqmodel / autoawq
# through Transformers when installed; otherwise bench/ecosystem/gptq_awq_ref.py dequantizes every
# Linear as GPTQModel's dequantize_weight (v1: AutoGPTQ's zero + 1, g_idx honoured) or AutoAWQ's
# dequantize_gemm / the WQLinear_GEMV layout, in fp32, into a dense Transformers model whose other
# tensors (AWQ's rescaled RMSNorm weights included) come from the quantized folder: fp32 compute.
CALIB = ["--calib", a.calib, "--nsamples", "16", "--seqlen", "256"]
ACALIB = [*CALIB, "--awq-search-samples", "2"]
DENSE = "gptq_awq_ref dequantization -> dense Transformers, fp32 compute"
LOWBIT_WRITES += [
    ("ct-int3-awq-g128", ["--method", "awq", "--bits", "3", "--group", "128", "--format",
                      "compressed-tensors", *ACALIB], "AWQ as llm-compressor writes it: "
     "compressed-tensors pack-quantized, norms rescaled"),
    ("gptq-4bit-g128", ["--method", "gptq", "--bits", "4", "--group", "128", "--format", "gptq", *CALIB],
     "GPTQ v1 (zero - 1 stored); " + DENSE),
    ("gptq-4bit-g128-v2", ["--method", "gptq", "--bits", "4", "--group", "128", "--format", "gptq_v2",
                           *CALIB], "GPTQ gptq_v2; " + DENSE),
    ("gptq-4bit-g128-act", ["--method", "gptq", "--bits", "4", "--group", "128", "--desc-act", *CALIB],
     "GPTQ v1, desc_act (permuted g_idx); " + DENSE),
    ("gptq-3bit-g128", ["--method", "gptq", "--bits", "3", "--group", "128", *CALIB],
     "GPTQ v1, 3-bit words straddling; " + DENSE),
    ("awq-4bit-g128-gemm", ["--method", "awq", "--group", "128", "--format", "gemm", *ACALIB],
     "AutoAWQ gemm, norms rescaled; " + DENSE),
    ("awq-4bit-g128-gemv", ["--method", "awq", "--group", "128", "--format", "gemv", *ACALIB],
     "AutoAWQ gemv, norms rescaled; " + DENSE),
]
# W8A8: compressed-tensors FP8 with the activations quantized as the config declares, by
# compressed-tensors on the reference side (its quantized forward: QDQ of each Linear's input) and
# by lowbit's default (--fp8-act auto); the static scales calibrated by lowbit.
TESTS_CUDA = os.path.join(HERE, "..", "..", "tests", "cuda")
LOWBIT_WRITES += [
    ("ct-fp8-static", ["--config", os.path.join(TESTS_CUDA, "ct-fp8-static.json"), *CALIB],
     "compressed-tensors FP8 (static input_scale), decompressed, inputs QDQ'd: fp32 compute"),
    ("ct-fp8-dynamic", ["--config", os.path.join(TESTS_CUDA, "ct-fp8-dynamic.json")],
     "compressed-tensors FP8_DYNAMIC (per-token), decompressed, inputs QDQ'd: fp32 compute"),
]


@torch.no_grad()
def calibrated_model(path):
    """The reference model of a GPTQ / AWQ folder: the package's loader where it is installed (its
    QuantLinear modules dequantized by ref_weight), else gptq_awq_ref.load_dense on the GPU, fp32."""
    qc = json.load(open(os.path.join(path, "config.json")))["quantization_config"]
    if gptq_awq_ref.package_available(qc["quant_method"]):
        model = load_hf(path, dtype=torch.float16)
        for m in model.modules():
            if hasattr(m, "qweight"):
                m.eco_qc = qc
        return model
    return gptq_awq_ref.load_dense(path, a.model, dtype=torch.float32, device="cuda")


def ref_configs():
    from transformers import BitsAndBytesConfig, FineGrainedFP8Config
    f32 = dict(dtype=torch.float32)
    return [
        ("bnb-nf4", dict(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32), **f32)),
        ("bnb-nf4-dq", dict(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32), **f32)),
        ("bnb-fp4", dict(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype=torch.float32), **f32)),
        ("bnb-int8", dict(quantization_config=BitsAndBytesConfig(load_in_8bit=True), **f32)),
        ("fp8-block", dict(quantization_config=FineGrainedFP8Config(), dtype=torch.bfloat16)),
        # Transformers 5.17 cannot quantize with HqqConfig at load time ("not available yet"); it
        # loads HQQ checkpoints. So hqq itself quantizes: every HQQLinear of a loaded HQQ model is
        # re-quantized from the bf16 source weights by HQQLinear.quantize (hqq's Quantizer, on the
        # GPU), and Transformers' save_pretrained serializes the result.
        ("hqq4-g64", dict(hqq_bits=4, dtype=torch.bfloat16)),
        ("hqq3-g64", dict(hqq_bits=3, dtype=torch.bfloat16)),
    ]


def set_module(layer, mod, new):
    parent, child = mod.split(".")
    setattr(layer.get_submodule(parent), child, new)


@torch.no_grad()
def hqq_model(path):
    """Transformers 5.17 has no HQQ path (HqqConfig raises "not available yet"; an HQQ checkpoint
    loads as plain, randomly initialized Linear layers), so the hqq package itself reads the
    checkpoint: the dense bf16 model's decoder Linear layers are replaced by HQQLinear modules
    filled by HQQLinear.load_state_dict from each module's tensors in the file, as Transformers 4.x
    did. Returns the model (bf16, HQQLinear forward = hqq's dequantize + matmul)."""
    from hqq.core.quantize import HQQLinear
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(path, f), device="cuda"))
    model = load_hf(a.model, dtype=torch.bfloat16)
    for i, layer in enumerate(model.model.layers):
        for mod in MODS:
            pre = f"model.layers.{i}.{mod}."
            hq = HQQLinear(None, quant_config=None, compute_dtype=torch.bfloat16, device="cuda",
                           initialize=False)
            hq.load_state_dict({k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)})
            set_module(layer, mod, hq)
    return model


@torch.no_grad()
def hqq_reference(bits, path):
    """hqq quantizes (HQQLinear on the GPU, BaseQuantizeConfig(nbits, group_size=64, axis=1) as
    Transformers' HqqConfig passes it, compute dtype bf16) and its own encoded state_dict() is
    written under each module's name, with the quantization_config Transformers 4.x wrote."""
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
    from safetensors.torch import save_file
    model = load_hf(a.model, dtype=torch.bfloat16)
    qc = BaseQuantizeConfig(nbits=bits, group_size=64, axis=1)
    sd = {k: v for k, v in model.state_dict().items()}
    for i, layer in enumerate(model.model.layers):
        for mod in MODS:
            hq = HQQLinear(layer.get_submodule(mod), quant_config=qc, compute_dtype=torch.bfloat16,
                           device="cuda")
            pre = f"model.layers.{i}.{mod}."
            del sd[pre + "weight"]
            for k, v in hq.state_dict().items():
                sd[pre + k] = v
    sd.pop("lm_head.weight", None)  # tied
    os.makedirs(path, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in sd.items()}, os.path.join(path, "model.safetensors"),
              metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    cfg["quantization_config"] = {"quant_config": qc, "quant_method": "hqq",
                                  "skip_modules": ["lm_head"]}
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"), indent=2)
    for f in ("generation_config.json",):
        shutil.copy(os.path.join(a.model, f), path)


results = []


def run(name, fn):
    if a.only and name not in a.only:
        return
    try:
        results.append(fn())
    except Exception as e:  # one failing layout must not hide the others
        traceback.print_exc()
        results.append(dict(name=name, error=f"{type(e).__name__}: {e}"[:800]))
        print(json.dumps(results[-1]), flush=True)
    torch.cuda.empty_cache()


for name, args, note in LOWBIT_WRITES:
    def one(name=name, args=args, note=note):
        path = os.path.join(a.work, "lowbit-" + name)
        shutil.rmtree(path, ignore_errors=True)
        _, secs = sh(LB, "quantize", a.model, path, *args)
        if name.startswith("hqq"):
            model = hqq_model(path)
        elif name.startswith("fp8-block"):  # no FP8 kernel without the `kernels` hub download:
            from transformers import FineGrainedFP8Config  # Transformers dequantizes at load time
            model = load_hf(path, dtype=torch.float32,
                            quantization_config=FineGrainedFP8Config(dequantize=True))
        elif name.startswith(("gptq", "awq")):
            model = calibrated_model(path)
        elif name.startswith(("ct-int", "ct-fp8-static", "ct-fp8-dynamic")):
            # decompressed to dense weights by compressed-tensors (which QDQs declared inputs)
            from transformers import CompressedTensorsConfig
            model = load_hf(path, dtype=torch.float32,
                            quantization_config=CompressedTensorsConfig(run_compressed=False))
        else:
            model = load_hf(path, dtype=torch.float32)
        r = compare("lowbit-" + name, "lowbit -> reference", path, model, note)
        del model
        return r
    run("lowbit-" + name, one)

for name, kw in (ref_configs() if not a.only or any(o.startswith("ref-") for o in a.only) else []):
    def one(name=name, kw=kw):
        path = os.path.join(a.work, "ref-" + name)
        shutil.rmtree(path, ignore_errors=True)
        kw = dict(kw)
        bits = kw.pop("hqq_bits", None)
        if bits:
            hqq_reference(bits, path)
        else:
            model = load_hf(a.model, **kw)
            model.save_pretrained(path)
            del model
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(a.model, f), path)
        if bits:
            model = hqq_model(path)
        elif name.startswith("fp8"):
            from transformers import FineGrainedFP8Config
            model = load_hf(path, dtype=torch.float32,
                            quantization_config=FineGrainedFP8Config(dequantize=True))
        else:
            model = load_hf(path, dtype=kw["dtype"])
        r = compare("ref-" + name, "reference -> lowbit", path, model,
                    "hqq state_dict()" if bits else "written by save_pretrained")
        del model
        return r
    run("ref-" + name, one)

def version(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return None


with open(os.path.join(a.out, "ecosystem.json"), "w") as f:
    json.dump(dict(results=results, windows=len(windows), seqs=[NSEQ, SEQ],
                   versions={m: version(m) for m in ("torch", "transformers", "bitsandbytes", "hqq",
                                                     "compressed_tensors", "gptqmodel", "awq")}),
              f, indent=1)
lines = ["| checkpoint | direction | Linears equal / all | weight max rel diff | logits rel L2 | "
         "top-1 agree | ppl lowbit | ppl reference | size MB |", "|" + " --- |" * 9]
for r in results:
    if "error" in r:
        lines.append(f"| {r['name']} | error: {r['error'][:200]} |")
        continue
    lines.append(f"| {r['name']} | {r['direction']} | {r['weights_exact']} / {r['linears']} | "
                 f"{r['weight_max_rel']:.1e} | {r['logits_rel_l2']:.1e} | {r['top1_agree']:.4f} | "
                 f"{r['ppl_lowbit']:.3f} | {r['ppl_ref']:.3f} | {r['size_mb']:.1f} |")
open(os.path.join(a.out, "ecosystem.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
