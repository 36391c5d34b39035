"""The CLI on bad input: a clear message naming the file and field, a non-zero exit (2 for bad flags,
1 for bad files), and nothing half-written."""
import json
import os
import shutil

from common import POCKET, fresh_tmp, lowbit, run_tests


def fails(args, code, *needles):
    p = lowbit(*args, check=False)
    assert p.returncode == code, (args, p.returncode, p.stderr)
    for n in needles:
        assert n in p.stderr, (args, n, p.stderr)
    assert p.stdout == "" or code == 2, p.stdout
    return p


def copy_pocket(name, with_weights=True):
    d = os.path.join(fresh_tmp(), name)
    os.makedirs(d)
    for f in os.listdir(POCKET):
        if f.endswith(".safetensors") and not with_weights:
            continue
        if f.endswith(".safetensors"):
            os.symlink(os.path.join(os.path.abspath(POCKET), f), os.path.join(d, f))
        else:
            shutil.copy(os.path.join(POCKET, f), d)
    return d


def test_bad_flags():
    fails([], 2, "usage")
    fails(["frobnicate"], 2, "unknown command 'frobnicate'")
    fails(["inspect"], 2, "missing DIR")
    fails(["inspect", POCKET, "--jsn"], 2, "unknown option '--jsn'")
    fails(["convert", POCKET], 2, "needs SRC and DST")
    fails(["convert", POCKET, "/tmp/x", "--shard-size", "lots"], 2, "--shard-size 'lots'")
    fails(["convert", POCKET, "/tmp/x", "--dtype", "int3"], 2, "--dtype 'int3'")
    fails(["perplexity", POCKET, "-f", "x", "--fp8-act", "g64"], 2, "--fp8-act 'g64'")
    fails(["generate", POCKET, "-p", "hi", "--fp8-act", "on"], 2, "--fp8-act 'on'")
    # W8A8 is for FP8 checkpoints only: pocket-llama is bf16
    fails(["generate", POCKET, "-p", "hi", "-n", "1", "--fp8-act", "g128"], 1,
          "FP8 activations (W8A8) asked for, but the checkpoint has no FP8 weights")
    # static scales are the checkpoint's: one that declares dynamic per-token activations has none
    tiny = os.path.join(os.path.dirname(__file__), "..", "data", "tiny", "llama-ct-fp8-dynamic")
    fails(["bench", tiny, "-p", "8", "-n", "0", "--fp8-act", "static"], 1,
          "static FP8 activations asked for, but quantization_config declares activations "
          "dynamic per token")
    fails(["generate", POCKET, "-p", "hi", "--kv-cache", "fp16"], 2, "--kv-cache 'fp16'")
    # an FP8 KV cache runs on the CPU; the CUDA backend refuses it by name (not silently as computed)
    kv = os.path.join(os.path.dirname(__file__), "..", "data", "tiny", "llama-ct-fp8-kv")
    fails(["bench", kv, "-p", "8", "-n", "0", "--device", "cuda"], 1,
          "kv_cache_scheme: the CUDA backend does not round the KV cache")
    assert lowbit("--help").returncode == 0 and "inspect" in lowbit("--help").stdout


def test_missing_dir_and_files():
    fails(["inspect", "/nonexistent/model"], 1, "/nonexistent/model", "not a directory")
    d = copy_pocket("noweights", with_weights=False)
    fails(["inspect", d], 1, d, "no model.safetensors")
    os.remove(os.path.join(d, "config.json"))
    fails(["inspect", d], 1, "config.json is missing")


def test_bad_config_names_key():
    d = copy_pocket("badcfg")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["num_key_value_heads"] = 3
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    fails(["inspect", d], 1, "config.json", "num_key_value_heads 3")
    cfg["num_key_value_heads"] = 4
    cfg["hidden_size"] = 384  # tensors no longer fit the config
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    fails(["inspect", d], 1, "model.embed_tokens.weight", "[32000, 512]", "[32000, 384]")
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(cfg).replace("1e-05", "NaN"))
    fails(["inspect", d], 1, "config.json:1:", "invalid JSON")


def test_truncated_weights():
    d = copy_pocket("trunc")
    path = os.path.join(d, "model.safetensors")
    data = open(os.path.realpath(path), "rb").read(1 << 20)
    os.remove(path)
    open(path, "wb").write(data)
    fails(["inspect", d], 1, path, "run past the data buffer")


def test_failed_convert_leaves_nothing():
    d = copy_pocket("src")
    os.remove(os.path.join(d, "tokenizer.json"))
    os.makedirs(os.path.join(d, "tokenizer.json"))  # copying it fails after the tensors are written
    out = os.path.join(os.path.dirname(d), "out")
    fails(["convert", d, out], 1, "tokenizer.json", "not a regular file")
    assert sorted(os.listdir(os.path.dirname(d))) == ["src"], os.listdir(os.path.dirname(d))


if __name__ == "__main__":
    run_tests([test_bad_flags, test_missing_dir_and_files, test_bad_config_names_key, test_truncated_weights,
               test_failed_convert_leaves_nothing])
