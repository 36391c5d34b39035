"""`lowbit perplexity` on the shared model.
  perplexity.py full   WikiText-2 test at ctx 1024 over 318 windows (about 5 minutes on 2 cores) gives
                       the model README's Transformers fp32 reference, 283.50 +- 0.1%, and within 1e-4
                       the value Transformers gives under exactly lowbit's protocol (every position of
                       every window scored): 283.3286, from bench/ppl_reference.py on an H100,
                       2026-11-22 (in-window only: 283.2849; no BOS: 283.5148)
  perplexity.py quick  a few windows (the sanitizer build): the JSON keys, ppl = exp(mean NLL),
                       the window arithmetic, --max-windows, and bad input; --kl-base against the
                       model itself and against its 4-bit RTN copy (the per-position KL math is
                       checked against long double in tests/test_model.c: kl_math)"""
import json
import math
import os
import sys

from common import POCKET, fresh_tmp, lowbit, run_tests, shared

WIKI = "data/wikitext-2-raw/wiki.test.raw"


def ppl_json(*args):
    return json.loads(lowbit("perplexity", POCKET, *args, "--json").stdout)


def test_full_wikitext_reference():
    out = ppl_json("-f", shared(WIKI), "--ctx", "1024")
    print(json.dumps(out))
    assert out["windows"] == 318, out
    assert out["tokens"] == 318 * 1024, out  # every position of every window scored
    assert abs(out["ppl"] / 283.50 - 1) <= 0.001, out["ppl"]
    # fp32 on both sides; summation order differs (logits agree to ~5e-7 relative L2)
    assert abs(out["ppl"] / 283.3286 - 1) <= 1e-4, out["ppl"]
    assert 0 < out["ppl_stderr"] < 0.02 * out["ppl"], out


def test_quick_windows():
    out = ppl_json("-f", shared(WIKI), "--ctx", "128", "--max-windows", "3")
    for key in ("ppl", "ppl_stderr", "tokens", "windows", "tokens_per_s", "mean_nll"):
        assert key in out, (key, out)
    assert out["windows"] == 3 and out["tokens"] == 3 * 128, out
    assert abs(out["ppl"] - math.exp(out["mean_nll"])) < 1e-6 * out["ppl"], out
    assert 10 < out["ppl"] < 5000 and out["tokens_per_s"] > 0, out
    one = ppl_json("-f", shared(WIKI), "--ctx", "128", "--max-windows", "1")
    assert one["windows"] == 1 and one["ppl"] != out["ppl"]


def test_text_output_and_errors():
    p = lowbit("perplexity", POCKET, "-f", shared("data/pocket-valid.txt"), "--ctx", "64",
               "--max-windows", "2")
    assert p.stdout.startswith("ppl "), p.stdout
    assert "128 tokens scored in 2 windows of 64" in p.stdout, p.stdout
    short = os.path.join(fresh_tmp(), "short.txt")
    open(short, "w").write("Too short.")
    p = lowbit("perplexity", POCKET, "-f", short, "--ctx", "64", check=False)
    assert p.returncode == 1 and "fewer than one window" in p.stderr, p.stderr
    p = lowbit("perplexity", POCKET, "-f", "/nonexistent.txt", check=False)
    assert p.returncode == 1 and "/nonexistent.txt" in p.stderr, p.stderr
    p = lowbit("perplexity", POCKET, "-f", short, "--ctx", "1", check=False)
    assert p.returncode == 2 and "--ctx '1'" in p.stderr, p.stderr
    p = lowbit("perplexity", POCKET, check=False)
    assert p.returncode == 2 and "-f FILE" in p.stderr, p.stderr


def test_kl_base():
    valid = shared("data/pocket-valid.txt")
    args = ("-f", valid, "--ctx", "128", "--max-windows", "3")
    alone = ppl_json(*args)
    same = ppl_json(*args, "--kl-base", POCKET)
    # the same model as its own base: both runs are the same arithmetic
    assert same["kl_mean"] == 0 and same["kl_max"] == 0 and same["same_top"] == 1, same
    assert same["ppl"] == alone["ppl"] == same["base_ppl"], (same, alone)
    q = os.path.join(fresh_tmp(), "rtn4")
    lowbit("quantize", POCKET, q, "--method", "rtn", "--bits", "4", "--group", "128")
    qalone = json.loads(lowbit("perplexity", q, *args, "--json").stdout)
    kl = json.loads(lowbit("perplexity", q, *args, "--kl-base", POCKET, "--json").stdout)
    print(json.dumps(kl))
    # the quantized model scored as alone, the base as alone: the right model in each role
    assert kl["ppl"] == qalone["ppl"] and kl["base_ppl"] == alone["ppl"], (kl, qalone, alone)
    assert kl["kl_base"] == POCKET and kl["tokens"] == 3 * 128, kl
    # Sanity bounds, not a reference (the KL arithmetic has one: tests/test_model.c kl_math): this
    # code measured 0.024 nats and 88% same top token for 4-bit g128 RTN of this 48M model (4
    # windows of 256). The KL range is two decades wide around that: it catches a 0 (the models
    # mixed up; same_top 1 likewise) or a value off by orders of magnitude, not small errors.
    assert 1e-3 < kl["kl_mean"] < 0.2 and 0 < kl["kl_stderr"] < kl["kl_mean"], kl
    assert 0 < kl["kl_median"] <= kl["kl_p99"] <= kl["kl_max"], kl
    assert 0.6 < kl["same_top"] < 1, kl
    p = lowbit("perplexity", q, *args, "--kl-base", POCKET)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("ppl ") and lines[1].startswith("KL divergence from " + POCKET), p.stdout
    assert "same top token" in lines[2] and "base ppl" in lines[2], p.stdout
    # a base of another vocabulary, and one that is not there
    tiny = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tiny", "llama")
    p = lowbit("perplexity", POCKET, *args, "--kl-base", tiny, check=False)
    assert p.returncode == 1 and "vocabulary" in p.stderr, p.stderr
    p = lowbit("perplexity", POCKET, *args, "--kl-base", "/nonexistent", check=False)
    assert p.returncode == 1 and "/nonexistent" in p.stderr, p.stderr


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "quick"
    if mode == "full":
        run_tests([test_full_wikitext_reference])
    else:
        run_tests([test_quick_windows, test_text_output_and_errors, test_kl_base])
