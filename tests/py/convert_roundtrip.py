"""lowbit convert: what it writes loads in the reference safetensors package with tensors byte-identical
to the source (single file and sharded with an index), and --dtype conversions equal ml_dtypes/numpy."""
import json
import os

import ml_dtypes
import numpy as np
import safetensors
from safetensors import safe_open

from common import POCKET, fresh_tmp, lowbit, run_tests, shared

SRC_FILE = shared("models/pocket-llama-48m/model.safetensors")


def load_raw(path):
    """name -> (dtype, shape, bytes), through the reference package's own parser."""
    with open(path, "rb") as f:
        return {name: (t["dtype"], list(t["shape"]), bytes(t["data"])) for name, t in safetensors.deserialize(f.read())}


SOURCE = load_raw(SRC_FILE)


def load_dir(d):
    """All tensors of a lowbit-written folder, following the index when there is one."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return load_raw(os.path.join(d, "model.safetensors")), None
    index = json.load(open(idx))
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors = load_raw(os.path.join(d, shard))
        for name in tensors:
            assert index["weight_map"][name] == shard, f"{name} is in {shard}, index says otherwise"
        out.update(tensors)
    return out, index


def check_metadata(path):
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()


def test_single_file_byte_identical():
    tmp = fresh_tmp()
    dst = os.path.join(tmp, "single")
    lowbit("convert", POCKET, dst)
    got, index = load_dir(dst)
    assert index is None
    assert got == SOURCE
    check_metadata(os.path.join(dst, "model.safetensors"))
    for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]:
        assert open(os.path.join(dst, name), "rb").read() == open(os.path.join(POCKET, name), "rb").read(), name
    assert sorted(os.listdir(tmp)) == ["single"]  # no temporaries left beside it


def test_sharded_with_index():
    tmp = fresh_tmp()
    dst = os.path.join(tmp, "sharded")
    lowbit("convert", POCKET, dst, "--shard-size", "20MB")
    got, index = load_dir(dst)
    assert got == SOURCE
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 4, shards
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(len(v[2]) for v in SOURCE.values())
    for s in shards:
        check_metadata(os.path.join(dst, s))
        n = sum(len(v[2]) for v in load_raw(os.path.join(dst, s)).values())
        assert n <= 20_000_000 or len(load_raw(os.path.join(dst, s))) == 1, (s, n)
    # sharded back to one file: still identical, and inspect reads the sharded folder
    back = os.path.join(tmp, "back")
    lowbit("convert", dst, back)
    assert load_dir(back)[0] == SOURCE
    info = json.loads(lowbit("inspect", dst, "--json").stdout)
    assert info["parameters"] == 47852032 and info["files"] == len(shards)


def test_dtype_conversions_match_references():
    tmp = fresh_tmp()
    for flag, np_type in [("f32", np.float32), ("f16", np.float16)]:
        dst = os.path.join(tmp, flag)
        lowbit("convert", POCKET, dst, "--dtype", flag)
        got, _ = load_dir(dst)
        assert json.load(open(os.path.join(dst, "config.json")))["dtype"] == {"f32": "float32", "f16": "float16"}[flag]
        for name, (dt, shape, data) in SOURCE.items():
            ref = np.frombuffer(data, dtype=ml_dtypes.bfloat16).astype(np.float32).astype(np_type)
            gdt, gshape, gdata = got[name]
            assert gdt == {"f32": "F32", "f16": "F16"}[flag] and gshape == shape, name
            assert gdata == ref.tobytes(), f"{name}: differs from numpy/ml_dtypes"
    # and back: f32 -> bf16 restores the original bytes exactly (bf16 -> f32 is exact)
    back = os.path.join(tmp, "bf16")
    lowbit("convert", os.path.join(tmp, "f32"), back, "--dtype", "bf16")
    got, _ = load_dir(back)
    assert got == SOURCE


def test_existing_destination():
    tmp = fresh_tmp()
    dst = os.path.join(tmp, "out")
    os.makedirs(dst)
    open(os.path.join(dst, "keep"), "w").write("x")
    p = lowbit("convert", POCKET, dst, check=False)
    assert p.returncode == 1 and "already exists" in p.stderr and dst in p.stderr, p.stderr
    assert os.listdir(dst) == ["keep"]
    lowbit("convert", POCKET, dst, "--force")
    assert "keep" not in os.listdir(dst) and load_dir(dst)[0] == SOURCE
    assert sorted(os.listdir(tmp)) == ["out"]


def test_inspect_json_facts():
    info = json.loads(lowbit("inspect", POCKET, "--json").stdout)
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["parameters"] == 47852032
    assert info["bytes_by_dtype"] == {"BF16": 95704064}
    assert info["quantizable_linear_layers"] == 70
    assert info["tied_embeddings"] is True
    assert info["quantization_config"] is None
    text = lowbit("inspect", POCKET).stdout
    for needle in ["LlamaForCausalLM", "47,852,032", "95.7 MB", "70 quantizable Linear layers", "tied"]:
        assert needle in text, needle


if __name__ == "__main__":
    run_tests([test_single_file_byte_identical, test_sharded_with_index, test_dtype_conversions_match_references,
               test_existing_destination, test_inspect_json_facts])
