"""`lowbit generate` on the shared model: greedy output equals Transformers' (README of pocket-llama),
streamed text equals the JSON text, sampling is reproducible by seed, bad flags and bad models fail
with a clear message."""
import json
import os
import shutil

from common import POCKET, fresh_tmp, lowbit, run_tests

PROMPT = "The history of the city"
# Transformers (fp32 and bf16, greedy), tokens after the prompt, then </s> = 2
REF_TEXT = "is a great matter of life.\n-- John Heywood"
REF_IDS = [349, 264, 1598, 3209, 302, 1411, 28723, 13, 376, 2215, 17162, 4871, 2]


def gen_json(*extra):
    p = lowbit("generate", POCKET, "-p", PROMPT, "--json", *extra)
    return json.loads(p.stdout)


def test_greedy_matches_transformers():
    out = gen_json("-n", "40")
    assert out["prompt_ids"] == [1, 415, 3340, 302, 272, 2990], out["prompt_ids"]
    assert out["ids"] == REF_IDS, out["ids"]
    assert out["text"] == REF_TEXT, repr(out["text"])
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes"):
        assert out[key] > 0, (key, out)


def test_streamed_text():
    p = lowbit("generate", POCKET, "-p", PROMPT, "-n", "40")
    assert p.stdout == REF_TEXT + "\n", repr(p.stdout)
    assert "prefill:" in p.stderr and "decode:" in p.stderr and "peak memory" in p.stderr, p.stderr


def test_limit_and_sampling():
    out = gen_json("-n", "3")
    assert out["ids"] == REF_IDS[:3], out["ids"]
    a = gen_json("-n", "24", "--temp", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "5")
    b = gen_json("-n", "24", "--temp", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "5")
    c = gen_json("-n", "24", "--temp", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "6")
    assert a["ids"] == b["ids"], (a["ids"], b["ids"])
    assert a["ids"] != c["ids"], "different seeds gave the same 24 tokens"
    assert 1 <= len(a["ids"]) <= 24


def fails(args, code, *needles):
    p = lowbit(*args, check=False)
    assert p.returncode == code, (args, p.returncode, p.stderr)
    for n in needles:
        assert n in p.stderr, (args, n, p.stderr)


def test_bad_flags_and_models():
    fails(["generate", POCKET], 2, "needs a prompt")
    fails(["generate", "-p", "x"], 2, "needs a model folder")
    fails(["generate", POCKET, "-p", "x", "-n", "ten"], 2, "-n 'ten'")
    fails(["generate", POCKET, "-p", "x", "--temp", "-1"], 2, "--temp '-1'")
    fails(["generate", POCKET, "-p", "x", "--top-p", "1.5"], 2, "--top-p '1.5'")
    fails(["generate", POCKET, "-p", "x", "--bogus"], 2, "unknown option '--bogus'")
    fails(["generate", POCKET, "-p", "x", "-p"], 2, "-p needs a value")
    fails(["generate", POCKET, "-p", "x", "--ctx", "4", "-n", "8"], 1, "exceed the context")
    d = os.path.join(fresh_tmp(), "notok")
    os.makedirs(d)
    for f in ("config.json", "model.safetensors"):
        os.symlink(os.path.abspath(os.path.join(POCKET, f)), os.path.join(d, f))
    fails(["generate", d, "-p", "x"], 1, "tokenizer.json")
    shutil.copy(os.path.join(POCKET, "tokenizer.json"), d)
    cfg = json.load(open(os.path.join(POCKET, "config.json")))
    cfg["hidden_act"] = "gelu"
    os.remove(os.path.join(d, "config.json"))
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    fails(["generate", d, "-p", "x"], 1, "hidden_act", "gelu")


if __name__ == "__main__":
    run_tests([test_greedy_matches_transformers, test_streamed_text, test_limit_and_sampling,
               test_bad_flags_and_models])
