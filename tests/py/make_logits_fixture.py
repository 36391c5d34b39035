"""Makes tests/data/fixtures/pocket-llama-logits.bin: final-position logits of Transformers (fp32, on
a GPU, eager attention, TF32 off) for a few fixed prompts of the shared model. Run once; the C test
test_model compares lowbit's forward pass with it.

Two steps, because the GPU machine has torch/transformers but not the shared data files:
  python3 make_logits_fixture.py prompts SHARED_DIR prompts.json     (here: token ids of the prompts)
  python3 make_logits_fixture.py logits MODEL_DIR prompts.json OUT.bin  (GPU machine: the logits)

A third mode makes tiny random models of the three families with the features pocket-llama lacks
(untied lm_head, Qwen2 q/k/v biases, Mistral's and Qwen2's sliding windows, linear / dynamic-NTK /
llama3 rope scaling) and the logits of Transformers at every position of one prompt:
  python3 make_logits_fixture.py tiny OUT_DIR     (GPU machine: OUT_DIR/<name>/{config.json,
                                                   model.safetensors,logits.bin})

A fourth mode makes compressed-tensors FP8 checkpoints of tests/data/tiny/llama with activation
quantization (W8A8) and the logits Transformers + compressed-tensors give for them, with the
activations quantized as the config declares (logits.bin) and with that switched off (logits-off.bin,
weights-only): FP8 (static per-tensor input_scale) and FP8_DYNAMIC (per-token scales); and FP8
with an FP8 KV cache (kv_cache_scheme, each attention's k_scale and v_scale; logits-off.bin there:
the KV cache's quantization off, the Linears' on):
  python3 make_logits_fixture.py ct-fp8 TINY_LLAMA_DIR OUT_DIR   (GPU machine, with the
                                                  compressed-tensors wheel installed)

File format (little endian):
  char magic[8] = "LBLOGITS"; uint32 version = 1; uint32 n_prompts; uint32 vocab;
  uint32 all_positions (0: the last position's logits only; 1: every position's)
  then per prompt: uint32 n_tokens; int32 ids[n_tokens]; float32 logits[vocab or n_tokens * vocab]
"""
import json
import struct
import sys

MAGIC, VERSION = b"LBLOGITS", 1


def make_prompts(shared, out):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{shared}/models/pocket-llama-48m/tokenizer.json")
    wiki = open(f"{shared}/data/wikitext-2-raw/wiki.test.raw", "rb").read().decode("utf-8", "replace")
    valid = open(f"{shared}/data/pocket-valid.txt", "rb").read().decode("utf-8", "replace")
    prompts = [
        tok.encode("The history of the city").ids,          # the README's prompt, 6 tokens
        tok.encode("a").ids,                                # 2 tokens: the few-rows path
        tok.encode(valid[:1500]).ids[:300],                  # in-domain text
        tok.encode(wiki[:8000]).ids[:1000],                  # crosses the 512-token chunks
    ]
    json.dump({"prompts": prompts}, open(out, "w"))
    print([len(p) for p in prompts])


def make_logits(model_dir, prompts_json, out):
    import torch
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").cuda().eval()
    prompts = json.load(open(prompts_json))["prompts"]
    vocab = model.config.vocab_size
    with open(out, "wb") as f:
        f.write(MAGIC + struct.pack("<4I", VERSION, len(prompts), vocab, 0))
        for ids in prompts:
            with torch.no_grad():
                logits = model(torch.tensor([ids]).cuda()).logits[0, -1].float().cpu()
            f.write(struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids))
            f.write(logits.numpy().astype("<f4").tobytes())
            print(len(ids), logits[:4].tolist(), int(logits.argmax()))


TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=160, initializer_range=0.25,
            max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False)
TINY_MODELS = {
    "llama": ("LlamaConfig", {"attention_bias": True}),
    "llama-rope-linear": ("LlamaConfig", {"rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                              "rope_theta": 10000.0}}),
    "llama-rope-dynamic": ("LlamaConfig", {"max_position_embeddings": 16, "rope_parameters": {
        "rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}),
    "llama-rope-llama3": ("LlamaConfig", {"rope_parameters": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16, "rope_theta": 500000.0}}),
    "mistral-window": ("MistralConfig", {"sliding_window": 8}),
    "qwen2-window": ("Qwen2Config", {"use_sliding_window": True, "sliding_window": 8,
                                     "max_window_layers": 1, "tie_word_embeddings": True}),
}


def make_tiny(out_dir):
    import os
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(1234)
    ids = [int(x) for x in torch.randint(0, TINY["vocab_size"], (40,))]
    for name, (cls, extra) in TINY_MODELS.items():
        cfg = getattr(transformers, cls)(**{**TINY, **extra})
        cfg.architectures = [cls.replace("Config", "ForCausalLM")]
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        model = model.to(torch.bfloat16)
        d = os.path.join(out_dir, name)
        model.save_pretrained(d)  # bf16 weights, as checkpoints ship
        ref = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager").cuda().eval()
        with torch.no_grad():
            logits = ref(torch.tensor([ids]).cuda()).logits[0].float().cpu()
        with open(os.path.join(d, "logits.bin"), "wb") as f:
            f.write(MAGIC + struct.pack("<4I", VERSION, 1, cfg.vocab_size, 1))
            f.write(struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids))
            f.write(logits.numpy().astype("<f4").tobytes())
        print(name, logits.shape, float(logits.std()))


def make_ct_fp8(src, out_dir):
    """Per-channel E4M3 weights (the compressed-tensors rule: s = amax / 448 in the weight's bf16),
    with static input scales chosen so that about 1% of the inputs saturate, or dynamic per-token
    activations. The scales are stored in bf16 as llm-compressor stores them."""
    import os
    import shutil
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = json.load(open(os.path.join(src, "config.json")))
    w = load_file(os.path.join(src, "model.safetensors"))
    ids = list(struct.unpack("<40i", open(os.path.join(src, "logits.bin"), "rb").read()[28:28 + 160]))
    # the inputs each Linear sees in the unquantized model (fp32), for the static scales, and the
    # outputs of k_proj and v_proj, for the KV cache's
    dense = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).cuda().eval()
    amax, kvmax = {}, {}

    def hook(name):
        def f(mod, args):
            amax[name] = float(torch.quantile(args[0].abs().flatten().float(), 0.99))
        return f

    def out_hook(name):
        def f(mod, args, out):
            kvmax[name] = float(torch.quantile(out.abs().flatten().float(), 0.99))
        return f
    for name, mod in dense.named_modules():
        if isinstance(mod, torch.nn.Linear) and name != "lm_head":
            mod.register_forward_pre_hook(hook(name))
            if name.endswith(("k_proj", "v_proj")):
                mod.register_forward_hook(out_hook(name))
    with torch.no_grad():
        dense(torch.tensor([ids]).cuda())
    for scheme in ("static", "dynamic", "kv"):
        d = os.path.join(out_dir, f"llama-ct-fp8-{scheme}")
        os.makedirs(d, exist_ok=True)
        t = {}
        for k, v in w.items():
            mod = k[: -len(".weight")]
            if not (k.endswith(".weight") and mod in amax):
                t[k] = v
                continue
            s = (v.abs().amax(dim=1, keepdim=True) / 448.0).to(torch.bfloat16)
            s = torch.clamp(s, min=torch.finfo(torch.bfloat16).eps)
            t[k] = (v.float() / s.float()).clamp(-448, 448).to(torch.float8_e4m3fn)
            t[mod + ".weight_scale"] = s
            if scheme != "dynamic":  # the 99th percentile of |x| at 448: ~1% saturate
                t[mod + ".input_scale"] = torch.tensor([amax[mod] / 448.0], dtype=torch.bfloat16)
            if scheme == "kv" and mod.endswith(("k_proj", "v_proj")):  # the attention's k_scale, v_scale
                t[mod[: -len("_proj")] + "_scale"] = torch.tensor([kvmax[mod] / 448.0], dtype=torch.bfloat16)
        save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        act = ({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor",
                "dynamic": False, "group_size": None, "block_structure": None, "actorder": None,
                "observer": "minmax", "observer_kwargs": {}} if scheme != "dynamic" else
               {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token",
                "dynamic": True, "group_size": None, "block_structure": None, "actorder": None,
                "observer": None, "observer_kwargs": {}})
        q = {"quant_method": "compressed-tensors", "format": "float-quantized",
             "quantization_status": "compressed", "global_compression_ratio": None,
             "ignore": ["lm_head"], "kv_cache_scheme": dict(act) if scheme == "kv" else None,
             "config_groups": {"group_0": {
                 "targets": ["Linear"], "input_activations": act, "output_activations": None,
                 "format": "float-quantized",
                 "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                             "strategy": "channel", "dynamic": False, "group_size": None,
                             "block_structure": None, "actorder": None, "observer": "minmax",
                             "observer_kwargs": {}}}}}
        json.dump({**cfg, "quantization_config": q}, open(os.path.join(d, "config.json"), "w"),
                  indent=2)
        qc = transformers.CompressedTensorsConfig(dequantize=True)  # dense fp32 weights, QDQ inputs
        model = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager", quantization_config=qc).cuda().eval()
        mods = [m for m in model.modules() if getattr(m, "quantization_scheme", None) is not None]
        # the decompressed weight is the codes times their scale
        lin = model.model.layers[0].self_attn.q_proj
        want = (t["model.layers.0.self_attn.q_proj.weight"].float()
                * t["model.layers.0.self_attn.q_proj.weight_scale"].float())
        print(scheme, len(mods), "quantized modules; q_proj weight max diff",
              float((lin.weight.detach().float().cpu() - want).abs().max()), lin.weight.device)
        # logits-off.bin: weights-only (static, dynamic); for kv, the KV cache's quantization off
        # (the attention modules'), the Linears' activations still quantized
        for name, on in (("logits.bin", True), ("logits-off.bin", False)):
            for m in mods:
                attn = type(m).__name__.endswith("Attention")
                m.quantization_enabled = on if scheme != "kv" or attn else True
                if not on and attn:
                    print(scheme, "KV cache quantization off in", type(m).__name__)
            with torch.no_grad():
                logits = model(torch.tensor([ids]).cuda()).logits[0].float().cpu()
            with open(os.path.join(d, name), "wb") as f:
                f.write(MAGIC + struct.pack("<4I", VERSION, 1, cfg["vocab_size"], 1))
                f.write(struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids))
                f.write(logits.numpy().astype("<f4").tobytes())
            print(scheme, name, float(logits.std()), logits[5, :4].tolist())
        del model


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "ct-fp8":
        make_ct_fp8(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "tiny":
        make_tiny(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "prompts":
        make_prompts(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "logits":
        make_logits(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
