"""`lowbit quantize --method gptq|awq` on the shared model with a small calibration set (8 windows of
256 tokens of ../shared/data/calibration/groups_merged.txt, so each run takes seconds):
  - each layout's tensors and quantization_config (GPTQ v1/v2 and act-order; AutoAWQ gemm/gemv with
    exactly AutoAWQ's config keys; compressed-tensors for AWQ at 3 bits);
  - an act-order checkpoint read back by an independent numpy dequantization (GPTQModel's rule:
    scales[g_idx] * (q - zeros[g_idx])) equals lowbit's own reading (lowbit-dump dequant), and its
    g_idx is a real permutation's group map;
  - AWQ folds its scales into the RMSNorm weights written beside the codes;
  - the result loads and runs, its perplexity close to bf16 and, at 3 bits, below RTN's;
  - the same seed gives the same files, another seed other windows;
  - --config with a GPTQConfig-style "dataset" (a list of strings, or a file beside the config);
  - bad input (no calibration, a Hub dataset name, too little text, wrong flags) fails clearly and
    leaves nothing behind."""
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

from common import BIN, POCKET, lowbit, run_tests, shared
from quantize import fails, leftovers, out, ppl, qconfig, tensors
from st_numpy import load_file

CAL = "data/calibration/groups_merged.txt"
WIKI_FILE = "data/wikitext-2-raw/wiki.test.raw"
SMALL = ["--nsamples", "8", "--seqlen", "256"]


def quantize(name, *args):
    d = out(name)
    p = lowbit("quantize", POCKET, d, *args)
    return d, p.stdout


def calib(*extra):
    return ["--calib", shared(CAL), *SMALL, *extra]


def digest(d):
    return hashlib.sha256(open(os.path.join(d, "model.safetensors"), "rb").read()).hexdigest()


def unpack_cols(words, bits, n):
    """AutoGPTQ's packing along axis 0: value i at bit i * bits of the little-endian word stream."""
    w = words.astype(np.uint32).view(np.uint8).reshape(words.shape[0], words.shape[1], 4)
    bitsarr = np.unpackbits(w, axis=2, bitorder="little")  # [rows, cols, 32]
    bitsarr = bitsarr.transpose(0, 2, 1).reshape(words.shape[0] * 32, words.shape[1])
    # bit b of value i lives at stream bit i * bits + b (stream: word-major along axis 0)
    idx = np.arange(n)[:, None] * bits + np.arange(bits)[None, :]
    vals = (bitsarr[idx] * (1 << np.arange(bits))[None, :, None]).sum(1)
    return vals


def dequant_gptq(t, p, bits, v1):
    q = unpack_cols(t[f"{p}.qweight"], bits, t[f"{p}.qweight"].shape[0] * 32 // bits)  # [in, out]
    z = unpack_cols(t[f"{p}.qzeros"].T.copy(), bits, t[f"{p}.qzeros"].shape[1] * 32 // bits).T
    z = z + (1 if v1 else 0)                                                             # [G, out]
    s = t[f"{p}.scales"].astype(np.float32)
    g = t[f"{p}.g_idx"]
    return ((q - z[g]) * s[g]).T.astype(np.float32)                                     # [out, in]


def test_gptq_v1_layout_and_quality():
    d, summary = quantize("gptq4", "--method", "gptq", *calib())
    assert "gptq int4 g128 asym" in summary and "8 x 256 tokens" in summary, summary
    q = qconfig(d)
    assert q["quant_method"] == "gptq" and q["bits"] == 4 and q["group_size"] == 128, q
    assert q["checkpoint_format"] == "gptq" and q["desc_act"] is False, q
    assert q["damp_percent"] == 0.01 and q["true_sequential"] is True, q
    assert q["meta"]["quantizer"] == "lowbit:gptq", q
    t = tensors(d)
    p = "model.layers.3.mlp.down_proj"
    assert t[f"{p}.qweight"] == ("I32", (1536 * 4 // 32, 512)), t[f"{p}.qweight"]
    assert t[f"{p}.scales"] == ("F16", (12, 512)) and t[f"{p}.g_idx"] == ("I32", (1536,))
    base = ppl(POCKET, 2)
    got = ppl(d, 2)
    # 4-bit g128: RTN is +1.1% over bf16 on the full text, GPTQ less; 3% leaves room for the
    # 2-window noise of a 2k-token calibration
    assert got < base * 1.03, (got, base)


def test_gptq_act_order_v2_round_trip():
    d, _ = quantize("gptq4act", "--method", "gptq", "--desc-act", "--format", "gptq_v2",
                    "--group", "64", *calib())
    q = qconfig(d)
    assert q["desc_act"] is True and q["checkpoint_format"] == "gptq_v2", q
    t = load_file(os.path.join(d, "model.safetensors"))
    dump = out("gptq4act-dump")
    subprocess.run([os.path.join(os.path.dirname(BIN), "lowbit-dump"), "dequant", d, dump],
                   check=True, capture_output=True)
    for l in (0, 7):
        for m in ("self_attn.q_proj", "mlp.down_proj"):
            p = f"model.layers.{l}.{m}"
            g = t[f"{p}.g_idx"]
            # act-order: groups follow the permutation, not c // 64, yet every group holds 64 columns
            assert (g != np.arange(len(g)) // 64).any(), p
            assert (np.bincount(g) == 64).all(), p
            ref = dequant_gptq(t, p, 4, v1=False)
            mine = np.load(os.path.join(dump, f"{p}.npy"))
            assert np.array_equal(ref, mine), (p, np.abs(ref - mine).max())
    assert ppl(d, 2) < ppl(POCKET, 2) * 1.03  # as in test_gptq_v1_layout_and_quality


def test_gptq_3bit_beats_rtn():
    d, _ = quantize("gptq3", "--method", "gptq", "--bits", "3", *calib())
    r, _ = quantize("rtn3", "--method", "rtn", "--bits", "3")
    g, b = ppl(d, 2), ppl(r, 2)
    assert g < b, (g, b)  # GPTQ's error feedback, even from 2k calibration tokens


def test_awq_gemm_gemv_and_norms():
    src = load_file(os.path.join(POCKET, "model.safetensors"))
    d, summary = quantize("awq4", "--method", "awq", "--awq-search-samples", "2", *calib())
    q = qconfig(d)
    # AutoAWQ's keys; lm_head (never quantized) named in modules_to_not_convert
    assert q == {"quant_method": "awq", "zero_point": True, "group_size": 128, "bits": 4,
                 "version": "gemm", "modules_to_not_convert": ["lm_head"]}, q
    t = tensors(d)
    p = "model.layers.2.mlp.gate_proj"
    assert t[f"{p}.qweight"] == ("I32", (512, 1536 // 8)), t[f"{p}.qweight"]
    assert t[f"{p}.qzeros"] == ("I32", (4, 1536 // 8)) and t[f"{p}.scales"] == ("F16", (4, 1536))
    w = load_file(os.path.join(d, "model.safetensors"))
    n = "model.layers.2.input_layernorm.weight"
    a = w[n].astype(np.float32)
    assert w[n].dtype == src[n].dtype and not np.array_equal(a, src[n].astype(np.float32)), n
    assert np.all(np.isfinite(a)) and np.all(a != 0)
    assert ppl(d, 2) < ppl(POCKET, 2) * 1.03  # as in test_gptq_v1_layout_and_quality
    v, _ = quantize("awq4v", "--method", "awq", "--format", "gemv", "--awq-search-samples", "2",
                    *calib())
    assert qconfig(v)["version"] == "gemv"
    assert tensors(v)[f"{p}.qweight"] == ("I32", (1536, 512 // 8))
    # the same algorithm, another packing: the same weights
    ga, gv = out("awq4-dump"), out("awq4v-dump")
    dump = os.path.join(os.path.dirname(BIN), "lowbit-dump")
    subprocess.run([dump, "dequant", d, ga], check=True, capture_output=True)
    subprocess.run([dump, "dequant", v, gv], check=True, capture_output=True)
    for f in glob.glob(os.path.join(ga, "*.npy")):
        assert np.array_equal(np.load(f), np.load(os.path.join(gv, os.path.basename(f)))), f


def test_awq_3bit_compressed_tensors():
    d, _ = quantize("awq3", "--method", "awq", "--bits", "3", "--format", "compressed-tensors",
                    "--calib", shared(CAL), "--nsamples", "8", "--seqlen", "512",
                    "--awq-search-samples", "4")
    q = qconfig(d)
    assert q["quant_method"] == "compressed-tensors", q
    w = q["config_groups"]["group_0"]["weights"]
    assert w["num_bits"] == 3 and w["group_size"] == 128 and w["symmetric"] is False, w
    r, _ = quantize("rtn3ct", "--method", "rtn", "--bits", "3")
    a, b = ppl(d, 6), ppl(r, 6)
    assert a < b, (a, b)


def test_seed_and_determinism():
    a, _ = quantize("seed0", "--method", "gptq", "--bits", "4", *calib("--seed", "7"))
    b, _ = quantize("seed0b", "--method", "gptq", "--bits", "4", *calib("--seed", "7"))
    c, _ = quantize("seed1", "--method", "gptq", "--bits", "4", *calib("--seed", "8"))
    assert digest(a) == digest(b)  # same windows, same threads' split: the same bytes
    assert digest(a) != digest(c)


def test_config_dataset():
    folder = out("cfgdir")
    os.makedirs(folder)
    text = open(shared(CAL), encoding="utf-8").read()
    docs = [text[i:i + 4000] for i in range(0, 160000, 4000)]
    cfg = os.path.join(folder, "gptq.json")
    json.dump({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True,
               "damp_percent": 0.02, "dataset": docs}, open(cfg, "w"))
    d, summary = quantize("cfg-list", "--config", cfg, *SMALL)
    q = qconfig(d)
    assert q["desc_act"] is True and q["damp_percent"] == 0.02, q
    assert "the config's dataset" in summary, summary
    open(os.path.join(folder, "calib.txt"), "w").write(text)
    json.dump({"quant_method": "awq", "w_bit": 4, "q_group_size": 128, "zero_point": True,
               "version": "GEMM", "dataset": "calib.txt"}, open(cfg, "w"))
    d, _ = quantize("cfg-file", "--config", cfg, "--awq-search-samples", "1", *SMALL)
    assert qconfig(d)["version"] == "gemm"


def test_bad_input():
    d = out("calib-bad")
    cal = shared(CAL)
    fails([POCKET, d, "--method", "gptq"], 1, "needs calibration text: --calib FILE", d)
    fails([POCKET, d, "--method", "awq", "--calib", "/nonexistent.txt"], 1, "/nonexistent.txt", d)
    fails([POCKET, d, "--method", "gptq", "--calib", cal, "--nsamples", "100000"], 1,
          "fewer than the 100000 samples", d)
    fails([POCKET, d, "--method", "gptq", "--calib", cal, "--nsamples", "0"], 2, "--nsamples", d)
    fails([POCKET, d, "--method", "rtn", "--desc-act"], 1, "apply to gptq only", d)
    fails([POCKET, d, "--method", "rtn", "--calib", cal], 1, "apply to gptq, awq and --scheme FP8 only",
          d)
    fails([POCKET, d, "--method", "awq", "--bits", "3", "--calib", cal], 1, "--format compressed-tensors", d)
    fails([POCKET, d, "--method", "awq", "--format", "gptq", "--calib", cal], 1, "gemm, gemv", d)
    fails([POCKET, d, "--method", "gptq", "--calib", cal, "--damp", "2"], 2, "--damp", d)
    cfg = out("calib-bad-cfg.json")
    json.dump({"quant_method": "gptq", "bits": 4, "dataset": "c4"}, open(cfg, "w"))
    fails([POCKET, d, "--config", cfg], 1, "key 'dataset': \"c4\" is not a file", d)
    json.dump({"quant_method": "gptq", "bits": 4, "dataset": [1, 2]}, open(cfg, "w"))
    fails([POCKET, d, "--config", cfg], 1, "key 'dataset'[0]: expected a string", d)
    json.dump({"quant_method": "gptq", "bits": 4, "true_sequential": False}, open(cfg, "w"))
    fails([POCKET, d, "--config", cfg, "--calib", cal], 1, "true_sequential", d)
    json.dump({"quant_method": "awq", "bits": 4, "w_bit": 3}, open(cfg, "w"))
    fails([POCKET, d, "--config", cfg, "--calib", cal], 1, "disagree", d)
    empty = out("empty.txt")
    open(empty, "w").close()
    fails([POCKET, d, "--method", "gptq", "--calib", empty], 1, "empty", d)
    assert not leftovers(d)


def test_quick_engine():
    """The sanitizer build's run: every engine path once on a tiny calibration (2 x 128 tokens)."""
    tiny = ["--calib", shared(CAL), "--nsamples", "2", "--seqlen", "128"]
    d, _ = quantize("quick-gptq", "--method", "gptq", "--desc-act", "--static-groups", *tiny)
    assert qconfig(d)["static_groups"] is True
    lowbit("perplexity", d, "-f", shared(WIKI_FILE), "--ctx", "128", "--max-windows", "1")
    d, _ = quantize("quick-awq", "--method", "awq", "--format", "gemv", "--awq-search-samples", "1",
                    *tiny)
    lowbit("perplexity", d, "-f", shared(WIKI_FILE), "--ctx", "128", "--max-windows", "1")


if __name__ == "__main__":
    if sys.argv[1:] == ["quick"]:
        run_tests([test_bad_input, test_quick_engine])
    else:
        run_tests([test_bad_input, test_gptq_v1_layout_and_quality,
                   test_gptq_act_order_v2_round_trip, test_gptq_3bit_beats_rtn,
                   test_awq_gemm_gemv_and_norms, test_awq_3bit_compressed_tensors,
                   test_seed_and_determinism, test_config_dataset])
