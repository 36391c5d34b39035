"""Independent torch dequantizers for the GPTQ (AutoGPTQ / GPTQModel) and AWQ (AutoAWQ) checkpoint
layouts, written from the reference packages' source, and a loader that turns such a checkpoint
into a dense Transformers model. bench/ecosystem/check.py uses them as the "reference" side where
gptqmodel / autoawq are not installed; they share no code with lowbit (src/quant/formats/gptq.c,
awq.c), so agreement with `lowbit-dump dequant` means two readings of the same files agree.

Reference functions mirrored (read, not copied):
  GPTQ  ModelCloud/GPTQModel gptqmodel/nn_modules/qlinear/__init__.py
            PackableQuantLinear.dequantize_weight  (unpack qweight along the input dim and qzeros
            along the output dim, 2/4/8-bit by shifts, 3-bit as a bit stream straddling words;
            weight = scales[g_idx] * (q - zeros[g_idx]), no "+1": GPTQModel computes on v2 zeros)
        ModelCloud/GPTQModel gptqmodel/utils/model.py convert_gptq_v1_to_v2_format_module
            (a "gptq" = v1 checkpoint stores zero - 1; on load every packed field gets +1, done as
            one add of 0x11111111 (4-bit) / 0x01010101 (8-bit) / 0x55555555 (2-bit) per word,
            and for 3-bit by shifting the logical fields)
        AutoGPTQ/AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py QuantLinear.forward (torch
            path: unpacked zero field + 1, groups taken as contiguous runs of group_size inputs,
            g_idx not consulted) -- the two agree whenever g_idx is the trivial i // group and no
            v1 field is all ones (a stored 2^bits - 1 is zero 2^bits for AutoGPTQ, but GPTQModel's
            packed add carries it into the next output's field).
  AWQ   casper-hansen/AutoAWQ awq/utils/packing_utils.py unpack_awq, reverse_awq_order,
            dequantize_gemm ("gemm": qweight [in, out/8], qzeros [G, out/8] with nibbles in the
            interleaved order 0,2,4,6,1,3,5,7; scales [G, out]; (q - z) * s per input group)
        casper-hansen/AutoAWQ awq/modules/linear/gemv.py WQLinear_GEMV.from_linear and
            calculate_zeros_width ("gemv": qweight [out, in/8] plain nibble order, qzeros
            [out, Z] packed along the GROUP dim, scales [out, 8 Z] with zero padding past G)

Every dequantizer returns float32 [out, in] computed in fp32 (the packages compute the product in
the scales' dtype, fp16; lowbit-dump computes in fp32 -- here the same fp32 product as lowbit)."""
import json
import os
import re

import torch

# ---- bit unpacking --------------------------------------------------------------------------------


def _u32(x):
    """int32 words as non-negative int64 (the bit pattern, without sign extension)."""
    return x.to(torch.int64) & 0xFFFFFFFF


def _unpack_stream(words, bits, dim):
    """Unpack `words` (int32) along `dim`: the words of each line along dim, read as one
    little-endian bit stream, hold consecutive `bits`-bit fields, field i at stream bit i * bits.
    For 2/4/8 bits this is GPTQModel's shift-by-wf unpack (field j of a word at bit j * bits); for
    3 bits it is the same 10 + straddle + 10 + straddle + 10 pattern its dequantize_weight decodes
    with the wf table and the two carry fix-ups. Returns int64 with dim grown by 32 / bits."""
    w = _u32(words.movedim(dim, -1))  # [..., n_words]
    nw = w.shape[-1]
    assert (nw * 32) % bits == 0
    nf = nw * 32 // bits
    pos = torch.arange(nf, dtype=torch.int64) * bits  # stream bit of each field
    wi, sh = pos // 32, pos % 32
    lo = w[..., wi] >> sh  # low part (w is non-negative: logical shift)
    spill = (sh + bits) > 32  # field straddles into the next word
    if bool(spill.any()):
        nxt = torch.where(spill, wi + 1, wi).clamp(max=nw - 1)
        hi = (w[..., nxt] << (32 - sh)) & 0xFFFFFFFF
        lo = torch.where(spill, lo | hi, lo)
    return (lo & ((1 << bits) - 1)).movedim(-1, dim)


# ---- GPTQ -----------------------------------------------------------------------------------------


def dequant_gptq(tensors, prefix, bits, group, v1, return_parts=False):
    """GPTQ layout of one Linear -> fp32 [out, in].

    tensors: name -> torch tensor (a safetensors state dict); prefix: "model.layers.0.mlp.up_proj".
    qweight int32 [in * bits / 32, out] (packed along the input dim), qzeros int32
    [G, out * bits / 32] (packed along the output dim), scales f16 [G, out], g_idx int32 [in].
    v1 (checkpoint_format "gptq"): the stored zero is zero - 1 -> +1 per field (AutoGPTQ's
    `zeros + 1`; GPTQModel's convert_gptq_v1_to_v2_format_module does the same as a packed add).
    Weights follow GPTQModel's dequantize_weight: W^T[i, o] = scales[g_idx[i], o] *
    (q[i, o] - zero[g_idx[i], o]); without a g_idx tensor, g_idx[i] = i // group."""
    qweight = tensors[prefix + ".qweight"]
    qzeros = tensors[prefix + ".qzeros"]
    scales = tensors[prefix + ".scales"].float()
    n_groups, out = scales.shape
    q = _unpack_stream(qweight, bits, 0)  # [in, out]
    n_in = q.shape[0]
    assert q.shape[1] == out, f"{prefix}: qweight {tuple(qweight.shape)} vs scales {tuple(scales.shape)}"
    z = _unpack_stream(qzeros, bits, 1)[:, :out]  # [G, out]
    assert z.shape[0] == n_groups
    if v1:
        z = z + 1
    gname = prefix + ".g_idx"
    if gname in tensors:
        g_idx = tensors[gname].to(torch.int64)
    else:
        g_idx = torch.arange(n_in, dtype=torch.int64) // (group if group > 0 else n_in)
    assert g_idx.shape == (n_in,) and int(g_idx.min()) >= 0 and int(g_idx.max()) < n_groups, \
        f"{prefix}: g_idx out of range"
    wt = scales[g_idx] * (q - z[g_idx]).to(torch.float32)  # [in, out]
    w = wt.t().contiguous()
    if return_parts:
        return w, dict(q=q, zeros=z, g_idx=g_idx)
    return w


def gptq_v1_carry_fields(tensors, prefix, bits):
    """How many v1 zero fields are all ones (stored 2^bits - 1, i.e. zero 2^bits): AutoGPTQ's
    `zeros + 1` reads them as 2^bits, GPTQModel's packed-word add carries them into the next field.
    A v1 writer must avoid them (lowbit refuses zero 0 in v1: lb_rtn_v1_safe)."""
    z = _unpack_stream(tensors[prefix + ".qzeros"], bits, 1)
    return int((z == (1 << bits) - 1).sum())


def gptq_idx_is_trivial(tensors, prefix, group):
    """True when g_idx is i // group (AutoGPTQ's cuda_old / exllama paths then agree with
    GPTQModel's g_idx path; desc_act checkpoints have a permutation-derived g_idx)."""
    g = tensors.get(prefix + ".g_idx")
    if g is None:
        return True
    g = g.to(torch.int64)
    return bool((g == torch.arange(g.numel()) // (group if group > 0 else g.numel())).all())


# ---- AWQ ------------------------------------------------------------------------------------------

AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble j of a gemm word holds output column ORDER[j]


def _awq_gemm_columns(packed):
    """AutoAWQ unpack_awq + reverse_awq_order: int32 [rows, n/8] -> int64 [rows, n] in column
    order (nibble j of word k is column 8k + AWQ_PACK_ORDER[j])."""
    nib = _unpack_stream(packed, 4, 1)  # [rows, n], nibble order
    rows, n = nib.shape
    out = torch.empty_like(nib)
    col = (torch.arange(n // 8).view(-1, 1) * 8 + torch.tensor(AWQ_PACK_ORDER).view(1, 8)).view(-1)
    out[:, col] = nib  # the nibble at position 8k + j belongs to column 8k + ORDER[j]
    return out


def awq_gemv_zeros_width(n_in, group):
    """AutoAWQ calculate_zeros_width: words per output row of the gemv qzeros."""
    mult = 1 if group >= 128 else {64: 2, 32: 4}.get(group)
    if mult is None:
        raise ValueError(f"AutoAWQ gemv does not support group size {group}")
    base = -(-(n_in // group) // 8)
    return -(-base // mult) * mult


def dequant_awq(tensors, prefix, bits, group, version, return_parts=False):
    """AutoAWQ layout of one Linear -> fp32 [out, in]; W[o, i] = (q - zero) * scale of group
    i // group. version "gemm": dequantize_gemm's reading; "gemv": WQLinear_GEMV's layout."""
    if bits != 4:
        raise ValueError("AutoAWQ packs 4-bit codes only")
    qweight = tensors[prefix + ".qweight"]
    qzeros = tensors[prefix + ".qzeros"]
    scales = tensors[prefix + ".scales"].float()
    if version == "gemm":
        q = _awq_gemm_columns(qweight)  # [in, out]
        z = _awq_gemm_columns(qzeros)  # [G, out]
        n_in, out = q.shape
        g = group if group > 0 else n_in
        assert scales.shape == (n_in // g, out) and z.shape == scales.shape
        gi = torch.arange(n_in) // g
        w = ((q - z[gi]).to(torch.float32) * scales[gi]).t().contiguous()
    elif version == "gemv":
        q = _unpack_stream(qweight, 4, 1)  # [out, in], plain nibble order along the input
        out, n_in = q.shape
        g = group if group > 0 else n_in
        n_groups = n_in // g
        zw = awq_gemv_zeros_width(n_in, g)
        assert qzeros.shape == (out, zw) and scales.shape == (out, zw * 8), \
            f"{prefix}: gemv qzeros {tuple(qzeros.shape)} scales {tuple(scales.shape)}, want Z={zw}"
        z = _unpack_stream(qzeros, 4, 1)[:, :n_groups]  # [out, G]: zeros packed along the groups
        s = scales[:, :n_groups]
        gi = torch.arange(n_in) // g
        w = (q - z[:, gi]).to(torch.float32) * s[:, gi]
    else:
        raise ValueError(f"unknown AWQ version {version!r}")
    if return_parts:
        return w, dict(q=q, zeros=z)
    return w


# ---- a dense Transformers model from a quantized folder --------------------------------------------


def read_tensors(folder):
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(folder, f)))
    return sd


def _gptq_module_params(qc, name):
    """bits, group, or None (not quantized), for one module under GPTQModel's `dynamic` rules
    ("-:regex" skips, "+:regex" or "regex" overrides; the first match wins)."""
    bits, group = int(qc.get("bits", 4)), int(qc.get("group_size", 128))
    for pat, over in (qc.get("dynamic") or {}).items():
        neg = pat.startswith("-:")
        rx = pat[2:] if pat[:2] in ("-:", "+:") else pat
        if re.match(rx, name):
            if neg:
                return None
            return int(over.get("bits", bits)), int(over.get("group_size", group))
    return bits, group


def dequant_module(qc, tensors, prefix):
    """The dequantized fp32 [out, in] weight of one module per the folder's quantization_config,
    or None where the module is stored unquantized."""
    if prefix + ".qweight" not in tensors:
        return None
    method = qc.get("quant_method")
    if method in ("gptq", "rtn"):
        p = _gptq_module_params(qc, prefix)
        if p is None:
            return None
        fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
        return dequant_gptq(tensors, prefix, p[0], p[1], v1=(fmt == "gptq"))
    if method == "awq":
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        return dequant_awq(tensors, prefix, bits, group, str(qc.get("version", "gemm")).lower())
    raise ValueError(f"quant_method {method!r} is not GPTQ or AWQ")


@torch.no_grad()
def load_dense(folder, base_model_dir, dtype=torch.float32, device="cpu"):
    """A LlamaForCausalLM (any AutoModelForCausalLM architecture) whose quantized Linear weights are
    dequantized from `folder` and whose every other tensor (embeddings, RMSNorm weights -- AWQ
    rescales them --, lm_head, biases) is taken from `folder` too; the config is the base model's
    without quantization_config (falling back to the folder's). Nothing comes from the base weights."""
    from transformers import AutoConfig, AutoModelForCausalLM
    qc = json.load(open(os.path.join(folder, "config.json")))["quantization_config"]
    cfg_dir = base_model_dir if base_model_dir and os.path.exists(
        os.path.join(base_model_dir, "config.json")) else folder
    cfg = AutoConfig.from_pretrained(cfg_dir)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    tensors = read_tensors(folder)
    used = set()
    state = model.state_dict()
    new = {}
    for name, p in state.items():
        if name in tensors:
            new[name] = tensors[name]
            used.add(name)
            continue
        if name.endswith(".weight"):
            prefix = name[:-len(".weight")]
            w = dequant_module(qc, tensors, prefix)
            if w is not None:
                new[name] = w
                used.update(k for k in tensors if k.startswith(prefix + "."))
                continue
        if name == "lm_head.weight" and getattr(cfg, "tie_word_embeddings", False):
            continue  # tied to embed_tokens
        raise KeyError(f"{folder}: no tensor for {name}")
    for name, t in new.items():
        if tuple(t.shape) != tuple(state[name].shape):
            raise ValueError(f"{name}: {tuple(t.shape)} in {folder}, model wants {tuple(state[name].shape)}")
    # biases of quantized Linears the config does not declare
    for k in tensors:
        if k.endswith(".bias") and k not in used and k not in state:
            mod = model.get_submodule(k[:-len(".bias")])
            mod.bias = torch.nn.Parameter(tensors[k].float())
            used.add(k)
    missing = [k for k in tensors if k not in used]
    if missing:
        raise KeyError(f"{folder}: tensors not used by the model: {missing[:8]}")
    model.load_state_dict({k: v.float() for k, v in new.items()}, strict=False)
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    return model.to(device=device, dtype=dtype).eval()


# ---- the real package loaders, where installed ------------------------------------------------------


def package_available(method):
    """gptqmodel for GPTQ, autoawq (module `awq`) for AWQ: when importable, check.py loads the folder
    through Transformers with the package's kernels instead of load_dense."""
    try:
        __import__("gptqmodel" if method == "gptq" else "awq")
        return True
    except Exception:
        return False


@torch.no_grad()
def package_weight(m, qc):
    """The dequantized weight [out, in] of a package QuantLinear (gptqmodel: dequantize_weight,
    [in, out]; autoawq gemm: awq.utils.packing_utils.dequantize_gemm, [in, out]; otherwise our own
    reading of the module's buffers)."""
    if hasattr(m, "dequantize_weight"):
        return m.dequantize_weight().t().float().cpu()
    sd = {"x." + k: v.cpu() for k, v in m.state_dict().items()}
    if qc.get("quant_method") == "awq":
        return dequant_awq(sd, "x", int(qc.get("bits", 4)), int(qc.get("group_size", 128)),
                           str(qc.get("version", "gemm")).lower())
    return dequant_module(qc, sd, "x")
