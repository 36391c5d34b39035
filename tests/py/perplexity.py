"""`lowbit perplexity` on the shared model.
  perplexity.py full   WikiText-2 test at ctx 1024 over 318 windows (about 5 minutes on 2 cores) gives
                       the model README's Transformers fp32 reference, 283.50 +- 0.1%, and within 1e-4
                       the value Transformers gives under exactly lowbit's protocol (every position of
                       every window scored): 283.3286, from bench/ppl_reference.py on an H100,
                       2026-11-22 (in-window only: 283.2849; no BOS: 283.5148)
  perplexity.py quick  a few windows (the sanitizer build): the JSON keys, ppl = exp(mean NLL),
                       the window arithmetic, --max-windows, and bad input"""
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


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "quick"
    if mode == "full":
        run_tests([test_full_wikitext_reference])
    else:
        run_tests([test_quick_windows, test_text_output_and_errors])
