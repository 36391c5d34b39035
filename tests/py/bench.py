"""`lowbit bench` (llama-bench's protocol) and what the packed CPU kernels change at model level:
 - bench's JSON: one record per model and test, positive rates, the checkpoint's real size and bits
   per weight, profile shares that cover the measured time; the markdown table; bad flags exit 2 and
   a missing folder exits 1 naming it;
 - perplexity of an RTN 4-bit and an 8-bit checkpoint through the packed kernels (int8 activations)
   and through --ref-kernels (reference dequantization, fp32 activations) on the same windows: they
   differ by less than 0.5% (the activations' rounding is about 0.2% of each value, see DESIGN.md);
   every ISA forced by LOWBIT_ISA gives the same perplexity within 0.5% too: the kernels differ only
   in summation order (tests/test_qkernels.c: 1e-5), but a last-bit difference can move an
   activation across a rounding boundary of the next Linear's int8 codes, one step of amax / 127, so
   models differ by activation-rounding noise (measured: 0.07% over 8 windows of 128), not by ulps;
 - `quantize --lm-head` (GPTQModel's "lm_head": true): the config unties the embeddings, the
   embeddings stay as stored, lm_head.qweight/qzeros/scales dequantized by an independent numpy
   reading (GPTQModel's rule) equal RTN of the embedding matrix with GPTQ's formulas (a numpy port),
   and the model runs with perplexity within 3% of the dense-head checkpoint (measured +1.0% on
   40 windows of pocket-valid)."""
import json
import os

import numpy as np

from calibrate import dequant_gptq
from common import POCKET, TMP, lowbit, out, run_tests, shared
from st_numpy import load_file

VALID = "data/pocket-valid.txt"
os.makedirs(TMP, exist_ok=True)


def test_bench_json_and_table():
    p = lowbit("bench", POCKET, "-p", "32,64", "-n", "8", "-r", "2", "-t", "2", "--json", "--profile")
    rows = json.loads(p.stdout)
    assert [r["test"] for r in rows] == ["pp32", "pp64", "tg8"], rows
    size = sum(os.path.getsize(os.path.join(POCKET, f)) for f in os.listdir(POCKET)
               if f.endswith(".safetensors"))
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["tokens_per_s_sd"] >= 0, r
        assert r["params"] == 47852032, r
        # tensor bytes: the file less its header (at most a few kB here)
        assert 0 < size - r["size_bytes"] < 65536, (size, r["size_bytes"])
        assert abs(r["bits_per_weight"] - 16.0) < 1e-9, r
        assert r["threads"] == 2
        prof = r["profile_s"]
        assert all(v >= 0 for v in prof.values()) and prof["qkv"] > 0 and prof["lm_head"] > 0, prof
    t = lowbit("bench", POCKET, "-p", "16", "-n", "0", "-r", "1").stdout
    assert t.startswith("| model | size | params | bpw | threads | test | t/s |"), t
    assert "| pocket-llama-48m |" in t and "| pp16 |" in t, t


def test_bench_batches_and_gen_table():
    """-b runs B sequences a test (B * N tokens, its own record); --gen gives the guides' table:
    per batch and (prefill, decode) pair, positive rates and the process's peak RSS on the CPU,
    which holds at least the checkpoint's weights it maps."""
    p = lowbit("bench", POCKET, "-p", "16", "-n", "4", "-b", "1,2", "-r", "1", "-t", "2", "--json")
    rows = json.loads(p.stdout)
    assert [(r["test"], r["batch"]) for r in rows] == [("pp16", 1), ("tg4", 1), ("pp16", 2), ("tg4", 2)], rows
    t = lowbit("bench", POCKET, "-p", "16", "-n", "0", "-b", "2", "-r", "1", "-t", "2").stdout
    assert "| batch | test |" in t and "| 2 | pp16 |" in t, t
    p = lowbit("bench", POCKET, "--gen", "-p", "8,16", "-n", "4,2", "-b", "1,3", "-r", "1", "-t", "2",
               "--json")
    rows = json.loads(p.stdout)
    assert [(r["batch"], r["prefill_len"], r["decode_len"]) for r in rows] == \
        [(1, 8, 4), (1, 16, 2), (3, 8, 4), (3, 16, 2)], rows
    for r in rows:
        assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0, r
        assert r["device"] == "cpu" and r["threads"] == 2, r
        assert r["memory_bytes"] >= r["size_bytes"] > 0, r
    t = lowbit("bench", POCKET, "--gen", "-p", "8", "-n", "2", "-b", "2", "-r", "1", "-t", "2").stdout
    assert t.startswith("| model | batch | prefill | decode | prefill t/s | decode t/s | peak RSS |"), t
    assert "| pocket-llama-48m | 2 | 8 | 2 |" in t, t


def test_bench_bad_input():
    for args in (["-p", "x"], ["-r", "0"], ["-n", "-3"], ["--frobnicate"], ["-p", "0", "-n", "0"],
                 ["-b", "0"], ["-b", "1,,2"], ["-b", "257"], ["--gen", "-p", "8,16", "-n", "1,2,3"],
                 ["--gen", "-n", "0"]):
        p = lowbit("bench", POCKET, *args, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
    p = lowbit("bench", check=False)
    assert p.returncode == 2 and "DIR" in p.stderr, p.stderr
    missing = os.path.join(TMP, "no-such-model")
    p = lowbit("bench", missing, check=False)
    assert p.returncode == 1 and missing in p.stderr, p.stderr


def ppl(d, *extra, env=None, ctx="512", windows="4"):
    old = dict(os.environ)
    try:
        if env:
            os.environ.update(env)
        p = lowbit("perplexity", d, "-f", shared(VALID), "--ctx", ctx, "--max-windows", windows,
                   "--json", *extra)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return json.loads(p.stdout)["ppl"]


def test_kernels_against_reference_path():
    for bits, group in ((4, "128"), (8, "-1")):
        d = out(f"rtn{bits}")
        lowbit("quantize", POCKET, d, "--method", "rtn", "--bits", str(bits), "--group", group)
        fast, ref = ppl(d), ppl(d, "--ref-kernels")
        assert abs(fast / ref - 1) < 5e-3, (bits, fast, ref)
        # the scalar twins are slow: 2 windows of 128 tokens for the ISA comparison
        base = ppl(d, ctx="128", windows="2")
        for isa in ("avx2", "ref"):
            other = ppl(d, env={"LOWBIT_ISA": isa}, ctx="128", windows="2")
            assert abs(other / base - 1) < 5e-3, (bits, isa, other, base)
        print(f"  rtn {bits}-bit: packed kernels {fast:.4f}, reference {ref:.4f} "
              f"({100 * (fast / ref - 1):+.3f}%)")


def test_quantized_lm_head():
    from quant_gptq_ref import quantize as rtn_ref
    d, plain = out("rtn4-head"), out("rtn4-plain")
    lowbit("quantize", POCKET, d, "--method", "rtn", "--bits", "4", "--group", "128", "--lm-head",
           "--format", "gptq_v2")  # v2: zeros as they are (v1 moves zero-0 groups, DESIGN.md)
    lowbit("quantize", POCKET, plain, "--method", "rtn", "--bits", "4", "--group", "128")
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["tie_word_embeddings"] is False and cfg["quantization_config"]["lm_head"] is True
    t = load_file(os.path.join(d, "model.safetensors"))
    src = load_file(os.path.join(POCKET, "model.safetensors"))
    assert "lm_head.weight" not in t and "lm_head.qweight" in t
    emb = src["model.embed_tokens.weight"]
    assert np.array_equal(t["model.embed_tokens.weight"], emb)
    w = emb.astype(np.float32)
    q, sc, z = rtn_ref(w, 4, 128, False)
    want = ((q.astype(np.float32) - np.repeat(z.T, 128, 1)) * np.repeat(sc.T, 128, 1))
    got = dequant_gptq(t, "lm_head", 4, False)
    # scales are stored in fp16 (GPTQ layout): the reference rounds them the same way first
    want16 = ((q.astype(np.float32) - np.repeat(z.T, 128, 1)) *
              np.repeat(sc.T.astype(np.float16).astype(np.float32), 128, 1))
    assert got.shape == w.shape and np.abs(got - want16).max() <= 1e-6 * np.abs(want).max(), \
        np.abs(got - want16).max()
    a, b = ppl(d), ppl(plain)
    assert abs(a / b - 1) < 0.03, (a, b)
    print(f"  lm_head 4-bit: ppl {a:.4f} vs dense head {b:.4f}")
    p = lowbit("quantize", POCKET, out("bad-head"), "--method", "nf4", "--lm-head", check=False)
    assert p.returncode == 1 and "--lm-head" in p.stderr, p.stderr  # as --desc-act with rtn


if __name__ == "__main__":
    run_tests([test_bench_json_and_table, test_bench_bad_input, test_kernels_against_reference_path,
               test_quantized_lm_head])
