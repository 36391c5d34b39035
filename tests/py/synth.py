"""`lowbit synth` (random models of real shapes) and the --device flag without a GPU:
 - tiny-qwen2 and tiny-llama-bias: the config keys that give Qwen2's q/k/v biases and window, and
   Llama's attention_bias/mlp_bias, with the bias tensors they need; they run;
 - the tiny shape: config.json has the shape's fields; every tensor the Llama layout names, with the
   shapes the config implies; Linear weights and embeddings have mean 0 and std 0.02 (sample of
   1.5M values: the sample std is within 1% of 0.02 with overwhelming probability, 4 sd is 0.23%),
   norms mean 1; no tensor is all zeros; the same seed writes the same bytes, another seed others;
 - --method rtn quantizes it (GPTQ layout) and the result runs (bench);
 - bad flags exit 2; an existing OUT without --force exits 1 and is left as it was; nothing is left
   beside OUT;
 - --device: a bad value exits 2; --device cuda on a machine without a GPU (CI) exits 1 with a
   message naming the missing device or backend, never a crash; with a GPU, bench runs there (and
   tests/cuda/run.sh checks the CUDA path's numbers)."""
import hashlib
import json
import os

import numpy as np

from common import POCKET, TMP, lowbit, out, run_tests, shared
from st_numpy import load_file

os.makedirs(TMP, exist_ok=True)


def digest(d):
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_tiny_shape_and_statistics():
    d = out("tiny")
    lowbit("synth", d, "--shape", "tiny", "--seed", "3")
    c = json.load(open(os.path.join(d, "config.json")))
    assert c["architectures"] == ["LlamaForCausalLM"] and c["hidden_size"] == 256, c
    assert c["num_hidden_layers"] == 2 and c["num_key_value_heads"] == 2, c
    t = load_file(os.path.join(d, "model.safetensors"))
    hd = c["hidden_size"] // c["num_attention_heads"]
    want = {"model.embed_tokens.weight": (32000, 256), "model.norm.weight": (256,)}
    for l in range(2):
        p = f"model.layers.{l}."
        want[p + "self_attn.q_proj.weight"] = (256, 256)
        want[p + "self_attn.k_proj.weight"] = (2 * hd, 256)
        want[p + "self_attn.v_proj.weight"] = (2 * hd, 256)
        want[p + "self_attn.o_proj.weight"] = (256, 256)
        want[p + "mlp.gate_proj.weight"] = (768, 256)
        want[p + "mlp.up_proj.weight"] = (768, 256)
        want[p + "mlp.down_proj.weight"] = (256, 768)
        want[p + "input_layernorm.weight"] = (256,)
        want[p + "post_attention_layernorm.weight"] = (256,)
    assert {k: tuple(v.shape) for k, v in t.items()} == want, sorted(t)
    lin = np.concatenate([v.astype(np.float64).ravel() for k, v in t.items() if v.ndim == 2])
    assert abs(lin.mean()) < 1e-4 and abs(lin.std() / 0.02 - 1) < 0.01, (lin.mean(), lin.std())
    norms = np.concatenate([v.astype(np.float64) for k, v in t.items() if v.ndim == 1])
    assert abs(norms.mean() - 1) < 0.01, norms.mean()
    for k, v in t.items():
        assert np.count_nonzero(v.astype(np.float32)) > 0.9 * v.size, k
    again = out("tiny-again")
    lowbit("synth", again, "--shape", "tiny", "--seed", "3")
    other = out("tiny-other")
    lowbit("synth", other, "--shape", "tiny", "--seed", "4")
    assert digest(d) == digest(again) and digest(d) != digest(other)


def test_bias_and_window_shapes():
    d = out("tiny-qwen2")
    lowbit("synth", d, "--shape", "tiny-qwen2")
    c = json.load(open(os.path.join(d, "config.json")))
    assert c["model_type"] == "qwen2" and c["use_sliding_window"] and c["sliding_window"] == 24, c
    t = load_file(os.path.join(d, "model.safetensors"))
    biases = sorted(k for k in t if k.endswith(".bias"))
    assert biases == sorted(f"model.layers.{l}.self_attn.{p}_proj.bias" for l in range(2)
                            for p in "qkv"), biases
    assert t["model.layers.0.self_attn.k_proj.bias"].shape == (128,)
    d = out("tiny-llama-bias")
    lowbit("synth", d, "--shape", "tiny-llama-bias")
    c = json.load(open(os.path.join(d, "config.json")))
    assert c["attention_bias"] and c["mlp_bias"] and not c["tie_word_embeddings"], c
    t = load_file(os.path.join(d, "model.safetensors"))
    assert len([k for k in t if k.endswith(".bias")]) == 14 and "lm_head.weight" in t
    rows = json.loads(lowbit("bench", d, "-p", "16", "-n", "2", "-r", "1", "--json").stdout)
    assert all(r["tokens_per_s"] > 0 for r in rows), rows


def test_quantized_and_runs():
    d = out("tiny-rtn4")
    lowbit("synth", d, "--shape", "tiny", "--layers", "1", "--method", "rtn", "--bits", "4")
    c = json.load(open(os.path.join(d, "config.json")))
    assert c["quantization_config"]["quant_method"] == "gptq" and c["num_hidden_layers"] == 1, c
    rows = json.loads(lowbit("bench", d, "-p", "16", "-n", "4", "-r", "1", "--json").stdout)
    assert all(r["tokens_per_s"] > 0 for r in rows), rows
    assert not [f for f in os.listdir(TMP) if "lowbit-dense" in f or "lowbit-tmp" in f]


def test_bad_flags_and_existing_output():
    for args in (["--shape", "llama-70b"], ["--layers", "0", "--shape", "tiny"], ["--dtype", "f8"],
                 ["--shape", "tiny", "--bogus"], ["--shape", "tiny", "--method"], []):
        p = lowbit("synth", os.path.join(TMP, "bad"), *args, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
    d = out("exists")
    os.makedirs(d)
    open(os.path.join(d, "keep"), "w").write("x")
    p = lowbit("synth", d, "--shape", "tiny", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr, p.stderr
    assert os.listdir(d) == ["keep"]


def test_device_flag():
    text = shared("data/pocket-valid.txt")
    for cmd in (["bench", POCKET, "-p", "8", "-n", "0"], ["perplexity", POCKET, "-f", text],
                ["generate", POCKET, "-p", "Hi"]):
        p = lowbit(*cmd, "--device", "tpu", check=False)
        assert p.returncode == 2 and "--device" in p.stderr, (cmd, p.stderr)
    p = lowbit("bench", POCKET, "-p", "8", "-n", "0", "--device", "cuda", "--json", check=False)
    if json.loads(lowbit("devices", "--json").stdout)["gpus"]:  # a GPU machine: it runs there
        assert p.returncode == 0 and json.loads(p.stdout)[0]["device"] == "cuda", p.stderr
        return
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "no CUDA device" in p.stderr or "no CUDA backend" in p.stderr, p.stderr


if __name__ == "__main__":
    run_tests([test_tiny_shape_and_statistics, test_bias_and_window_shapes, test_quantized_and_runs, test_bad_flags_and_existing_output,
               test_device_flag])
