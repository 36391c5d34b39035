"""Checks lowbit's RTN + GPTQ checkpoints (written by test_quant_gptq into argv[1]) against an
independent numpy implementation of GPTQ's Quantizer (find_params / quantize, fp32, round half to
even) and of AutoGPTQ's packing (qlinear_cuda_old.pack: 2/4/8 bits by shifts, 3 bits by its own
word-straddling loop), for checkpoint_format v1 (zeros - 1) and v2. Everything must be bit-exact."""
import os
import sys

import numpy as np
from safetensors.numpy import load_file

from common import run_tests

OUT = sys.argv[1] if __name__ == "__main__" else None  # imported: quantize() only
LAYERS = {  # name: (bits, group, sym, act_order)
    "a.w4g128": (4, 128, False, False), "a.w4sym": (4, 128, True, False),
    "a.w3g128": (3, 128, False, False), "a.w2g64": (2, 64, False, False),
    "a.w8pc": (8, 96, True, False), "a.w4act": (4, 64, False, True),
}


def find_params(x, bits, sym):
    """GPTQ Quantizer.find_params(weight=True) over the rows of x [R, n] in float32."""
    maxq = np.float32(2 ** bits - 1)
    xmin = np.minimum(x.min(1), 0).astype(np.float32)
    xmax = np.maximum(x.max(1), 0).astype(np.float32)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    both = (xmin == 0) & (xmax == 0)
    xmin = np.where(both, np.float32(-1), xmin)
    xmax = np.where(both, np.float32(1), xmax)
    scale = ((xmax - xmin) / maxq).astype(np.float32)
    zero = np.full_like(scale, (maxq + 1) / 2) if sym else np.round(-xmin / scale).astype(np.float32)
    return scale, zero


def quantize(w, bits, group, sym):
    R, C = w.shape
    G = (C + group - 1) // group
    q = np.zeros((R, C), np.uint32)
    scales = np.zeros((G, R), np.float32)
    zeros = np.zeros((G, R), np.float32)
    for g in range(G):
        x = w[:, g * group:(g + 1) * group]
        s, z = find_params(x, bits, sym)
        q[:, g * group:(g + 1) * group] = np.clip(np.round(x / s[:, None]) + z[:, None], 0,
                                                  2 ** bits - 1).astype(np.uint32)
        scales[g], zeros[g] = s, z
    return q, scales, zeros


def pack_rows(v, bits):
    """AutoGPTQ's pack along axis 0 of a uint32 [n, m] array -> int32 [n * bits / 32, m]."""
    v = v.astype(np.uint64)
    n, m = v.shape
    out = np.zeros((n * bits // 32, m), np.uint64)
    if bits in (2, 4, 8):
        per = 32 // bits
        for row in range(out.shape[0]):
            for j in range(per):
                out[row] |= v[row * per + j] << np.uint64(bits * j)
    else:  # 3 bits: 32 values in 3 words, two values straddling
        i = row = 0
        while row < out.shape[0]:
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j)
            i += 10
            out[row] |= v[i] << np.uint64(30)
            row += 1
            out[row] |= (v[i] >> np.uint64(2)) & np.uint64(1)
            i += 1
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j + 1)
            i += 10
            out[row] |= v[i] << np.uint64(31)
            row += 1
            out[row] |= (v[i] >> np.uint64(1)) & np.uint64(3)
            i += 1
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j + 2)
            i += 10
            row += 1
    return (out & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)


def check_version(version):
    src = load_file(os.path.join(OUT, "source/model.safetensors"))
    ck = load_file(os.path.join(OUT, f"gptq-v{version}/model.safetensors"))
    for name, (bits, group, sym, act) in LAYERS.items():
        w = src[f"src.{name}"]
        R, C = w.shape
        q, scales, zeros = quantize(w, bits, group, sym)
        g_idx = ck[f"{name}.g_idx"]
        if act:  # lowbit's test relabels groups by a column permutation after quantizing
            perm = np.zeros(C, np.int64)
            perm[(np.arange(C) * 37) % C] = np.arange(C)
            assert np.array_equal(g_idx, (perm // group).astype(np.int32)), f"{name}: g_idx"
        else:
            assert np.array_equal(g_idx, np.arange(C, dtype=np.int32) // group), f"{name}: g_idx"
        assert (zeros > 0).all(), "a zero of 0 is not representable in v1 (choose other test data)"
        stored_z = (zeros - 1 if version == 1 else zeros).astype(np.uint32)
        assert np.array_equal(ck[f"{name}.qweight"], pack_rows(q.T, bits)), f"{name}: qweight"
        assert np.array_equal(ck[f"{name}.qzeros"], pack_rows(stored_z.T, bits).T), f"{name}: qzeros"
        assert np.array_equal(ck[f"{name}.scales"], scales.astype(np.float16)), f"{name}: scales"
        if not act:  # dequantized as the references do: within one step of the fp32 grid
            s = ck[f"{name}.scales"].astype(np.float32)[g_idx, np.arange(R)[:, None]]
            deq = s * (q.astype(np.float32) - zeros[g_idx, np.arange(R)[:, None]])
            assert np.abs(deq - w).max() <= scales.max() * (1 + 2 ** -10), name


def test_v1():
    check_version(1)


def test_v2():
    check_version(2)


if __name__ == "__main__":
    run_tests([test_v1, test_v2])
