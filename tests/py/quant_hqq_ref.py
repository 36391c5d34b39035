"""HQQ against an independent numpy float32 port of hqq's Quantizer.quantize (optimize=True, axis=1)
and optimize_weights_proximal_legacy as hqq 0.2.8 has them (lp 0.7, beta 10 kept fixed, 20
iterations, early stop; flat groups get scale 1), run on the
source weights tests/test_quant_hqq.c wrote beside each checkpoint.

The checkpoint is decoded here with hqq's own BitPack rules (not lowbit's), and its meta tensors are
checked against what HQQLinear.state_dict() encodes.

Tolerances: the min/max init and the scale are elementwise fp32 operations and must match bit for
bit. The solver's per-group mean and the global mean |W - W_r| are fp32 reductions that lowbit sums
in double and numpy pairwise in fp32 (PyTorch in yet another order), and pow() may come from
different libm/SIMD paths; those ulp-level differences can move a code that sits on a rounding tie
in a later iteration. So zeros must agree to 1e-4 code units, codes may differ by at most 1 in at
most 0.1% of the weights, and the mean reconstruction error must agree to 0.1%.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from st_numpy import load_file  # noqa: E402
from common import run_tests  # noqa: E402

OUT = sys.argv[1]
F32 = np.float32


# ---- numpy port of hqq/core/optimize.py and quantize.py (CPU: fp32) ---------------------------

def shrink_lp_op(x, beta, lp_norm):
    with np.errstate(divide="ignore"):  # |x| = 0: 0 - inf, clamped to 0 as in PyTorch
        return np.sign(x) * np.maximum(
            np.abs(x) - F32(1.0 / beta) * np.power(np.abs(x), F32(lp_norm - 1)), F32(0))


def optimize_weights_proximal(W_f, scale, zero, min_max, axis,
                              lp_norm=0.7, beta=1e1, kappa=1.0, iters=20, early_stop=True):
    best_error = np.inf
    for _ in range(iters):
        W_q = np.clip(np.round(W_f * scale + zero), min_max[0], min_max[1])
        W_r = (W_q - zero) / scale
        W_e = shrink_lp_op(W_f - W_r, beta, lp_norm)
        zero = np.mean(W_q - (W_f - W_e) * scale, axis=axis, keepdims=True, dtype=F32)
        current_error = float(np.abs(W_f - W_r).mean(dtype=F32))
        if early_stop:
            if current_error < best_error:
                best_error = current_error
            else:
                break
        beta *= kappa
    W_q = np.clip(np.round(W_f * scale + zero), min_max[0], min_max[1])
    return W_q, scale, zero


def hqq_quantize(tensor, nbits, group_size, round_zero, axis=1):
    W = tensor.astype(F32)
    W = W.reshape([-1, group_size]) if axis == 1 else W.reshape([group_size, -1])
    _min = W.min(axis=axis, keepdims=True)
    _max = W.max(axis=axis, keepdims=True)
    max_v = round(2 ** nbits - 1)
    denom = _max - _min
    with np.errstate(divide="ignore"):
        scale = F32(max_v) / denom
    scale = np.minimum(np.where(np.abs(denom) <= F32(1e-4), F32(1), scale), F32(2e4))
    zero = -_min * scale
    if round_zero:
        zero = np.round(zero)
    W_q, scale, zero = optimize_weights_proximal(W, scale, zero, [0, max_v], axis)
    return W_q.astype(np.uint8), F32(1.0) / scale, zero


# ---- hqq/core/bitpack.py unpacking -------------------------------------------------------------

def unpack(W_q, nbits, n):
    if nbits == 8:
        return W_q
    if nbits == 3:
        w = W_q.astype(np.int64)
        fields = [(w >> s) & 7 for s in range(27, -1, -3)]
        return np.concatenate(fields, axis=0)[:n].astype(np.uint8)
    k = 8 // nbits
    mask = (1 << nbits) - 1
    return np.concatenate([(W_q >> (nbits * (k - 1 - m))) & mask for m in range(k)], axis=0)


def text(t):
    return bytes(t.tolist()).decode()


def cases():
    with open(os.path.join(OUT, "cases.txt")) as f:
        return [(a, int(b), int(c)) for a, b, c in (line.split() for line in f if line.strip())]


def test_meta_as_hqqlinear_encodes_it():
    for name, nbits, gs in cases():
        t = load_file(os.path.join(OUT, name, "model.safetensors"))
        rows, cols = t["src"].shape
        n = rows * cols // gs
        assert t["layer.shape"].dtype == np.int64 and t["layer.shape"].tolist() == [rows, cols]
        for key, val in (("nbits", nbits), ("group_size", gs), ("axis", 1)):
            assert t["layer." + key].dtype == np.int32 and t["layer." + key].shape == (), key
            assert int(t["layer." + key]) == val, key
        packing = {8: "8bit_u8", 4: "4bit_u8", 3: "3bit_32", 2: "2bit_u8", 1: "1bit_u8"}[nbits]
        assert text(t["layer.packing"]) == packing
        view = "torch.int32" if nbits == 3 else "torch.uint8"
        assert text(t["layer.unpack_view_dtype"]) == view
        assert text(t["layer.compute_dtype"]) == "torch.float32"
        flags = {"view_as_float": 0, "quant_scale": 0, "quant_zero": 0, "offload_meta": 0,
                 "encoded_state_dict": 1, "stores_quant_config": 1, "channel_wise": 1,
                 "optimize": 1, "round_zero": int(nbits == 4)}
        for key, val in flags.items():
            assert t["layer." + key].dtype == np.uint8 and t["layer." + key].shape == (), key
            assert int(t["layer." + key]) == val, key
        assert t["layer.scale"].shape == (n, 1) and t["layer.zero"].shape == (n, 1)
        rows_packed = -(-n // 10) if nbits == 3 else n * nbits // 8
        assert t["layer.W_q"].shape == (rows_packed, gs), t["layer.W_q"].shape


def test_matches_numpy_port():
    for name, nbits, gs in cases():
        t = load_file(os.path.join(OUT, name, "model.safetensors"))
        w = t["src"]
        n = w.size // gs
        q_ref, s_ref, z_ref = hqq_quantize(w, nbits, gs, round_zero=(nbits == 4))
        q = unpack(t["layer.W_q"], nbits, n)
        s, z = t["layer.scale"], t["layer.zero"]
        assert np.array_equal(s.view(np.uint32), s_ref.view(np.uint32)), f"{name}: scales differ"
        dz = np.abs(z - z_ref).max()
        assert dz <= 1e-4, f"{name}: zeros differ by {dz}"
        dq = np.abs(q.astype(np.int32) - q_ref.astype(np.int32))
        frac = np.count_nonzero(dq) / dq.size
        assert dq.max() <= 1 and frac <= 1e-3, f"{name}: {frac:.2%} codes differ, max {dq.max()}"
        Wg = w.reshape(-1, gs)
        e = np.abs((q - z) * s - Wg).mean()
        e_ref = np.abs((q_ref - z_ref) * s_ref - Wg).mean()
        assert abs(e - e_ref) <= 1e-3 * e_ref, (name, e, e_ref)
        print(f"  {name}: {frac:.4%} codes differ, max zero diff {dz:.2g}, "
              f"err {e:.4g} vs {e_ref:.4g}")


if __name__ == "__main__":
    run_tests([test_meta_as_hqqlinear_encodes_it, test_matches_numpy_port])
