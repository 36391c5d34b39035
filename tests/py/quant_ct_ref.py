"""compressed-tensors "pack-quantized" int weights against an independent numpy reference.

Written from compressed-tensors 0.20.0 (quantization/utils/helpers.py calculate_qparams,
quantization/lifecycle/forward_helpers.py _quantize / _dequantize and the Triton kernel,
compressors/pack_quantized/helpers.py pack_to_int32 / unpack_from_int32), not from lowbit:

  calculate_qparams in the weight's dtype (each PyTorch op rounds its fp32 result to that dtype):
    min' = min(min, 0), max' = max(max, 0), range = qmax - qmin = 2^b - 1
    sym:  scale = max(|min'|, |max'|) / (range / 2), zp = 0
    asym: scale = (max' - min') / range, zp = clamp(qmin - min' / scale, qmin, qmax)
    scale == 0 -> finfo(dtype).eps; zp = round(clamp(zp, -128, 127)).to(int8) (NaN -> 0)
  quantize: q = round(clamp(x / scale + zp, qmin, qmax)) -- fp32 (Triton kernel) or, "eager",
    x / scale and + zp each rounded to the weight's dtype (the PyTorch fallback)
  pack_to_int32: q + 2^(b-1) as unsigned; rows padded to a multiple of 32 elements; each run of
    32 elements fills exactly b int32 words, element i at bit i*b of the run (a value crossing a
    word boundary continues in the next word's low bits); the row is cut to ceil(cols*b/32) words.
    The zero point is packed the same way along dim 0 (transpose, pack, transpose).
  dequantize: (q.to(scale.dtype) - zp.to(scale.dtype)) * scale, in the scale's dtype.

tests/test_quant_ct.c writes one folder per case (source weights "src", the layer "layer.*") and
cases.txt (name bits group sym dtype eager); every scale, zero point and packed word must match.
"""
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from st_numpy import load_file  # noqa: E402
from common import run_tests  # noqa: E402

F32 = np.float32
DT = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16}


def rnd(x, dt):
    x = np.asarray(x, dtype=F32)
    return x if dt is np.float32 else x.astype(dt).astype(F32)


def eps(dt):
    return F32(ml_dtypes.finfo(dt).eps) if dt is ml_dtypes.bfloat16 else F32(np.finfo(dt).eps)


def qrange(bits):
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def calculate_qparams(w, bits, group, sym, dt):
    """Scale [rows, G] (float32 values of dt) and zero point [rows, G] (int8)."""
    rows, cols = w.shape
    g = cols if group == -1 else group
    assert cols % g == 0, "compressed-tensors refuses partial groups"
    x = w.reshape(rows, cols // g, g)
    mn = np.minimum(x.min(axis=2), F32(0))
    mx = np.maximum(x.max(axis=2), F32(0))
    qmin, qmax = qrange(bits)
    bit_range = F32(qmax - qmin)
    with np.errstate(divide="ignore", invalid="ignore"):
        if sym:
            s = rnd(np.maximum(np.abs(mn), np.abs(mx)) / (bit_range / F32(2)), dt)
            zp = np.zeros_like(s)
        else:
            s = rnd(rnd(mx - mn, dt) / bit_range, dt)
            zp = rnd(F32(qmin) - rnd(mn / s, dt), dt)
            zp = np.clip(zp, qmin, qmax)
    s = np.where(s == 0, eps(dt), s).astype(F32)
    zp = np.round(np.clip(zp, -128, 127))
    zp = np.where(np.isnan(zp), 0, zp).astype(np.int8)
    return s, zp


def quantize(w, s, zp, bits, group, dt, eager):
    rows, cols = w.shape
    g = cols if group == -1 else group
    qmin, qmax = qrange(bits)
    x = w.reshape(rows, cols // g, g)
    y = x / s[:, :, None]
    if eager:
        y = rnd(y, dt)
    y = y + zp[:, :, None].astype(F32)
    if eager:
        y = rnd(y, dt)
    return np.round(np.clip(y, qmin, qmax)).astype(np.int8).reshape(rows, cols)


def pack_to_int32(q, bits, packed_dim=1):
    v = q.astype(np.int64) + (1 << (bits - 1))
    if packed_dim == 0:
        v = v.T
    rows, cols = v.shape
    padded = -(-cols // 32) * 32
    v = np.pad(v, ((0, 0), (0, padded - cols))).reshape(rows, padded // 32, 32)
    words = np.zeros((rows, padded // 32, bits), dtype=np.int64)
    for i in range(32):
        start = i * bits
        k, off = start // 32, start % 32
        words[:, :, k] += v[:, :, i] << off
        spill = off + bits - 32
        if spill > 0:
            words[:, :, k + 1] += v[:, :, i] >> (bits - spill)
    words = (words & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    out = words.reshape(rows, -1)[:, : -(-cols * bits // 32)]
    return np.ascontiguousarray(out.T if packed_dim == 0 else out)


def unpack_from_int32(packed, bits, n, packed_dim=1):
    """Element i of a row from global bit i*bits of the row's little-endian word stream."""
    p = packed.T if packed_dim == 0 else packed
    u = p.view(np.uint32).astype(np.uint64)
    out = np.zeros((p.shape[0], n), dtype=np.int64)
    for i in range(n):
        start = i * bits
        k, off = start // 32, start % 32
        val = u[:, k] >> np.uint64(off)
        if off + bits > 32:
            val |= u[:, k + 1] << np.uint64(32 - off)
        out[:, i] = (val & np.uint64((1 << bits) - 1)).astype(np.int64)
    out = (out - (1 << (bits - 1))).astype(np.int8)
    return out.T if packed_dim == 0 else out


def dequantize(q, s, zp, group, dt):
    rows, cols = q.shape
    g = cols if group == -1 else group
    qs = rnd(q.reshape(rows, cols // g, g).astype(F32) - zp[:, :, None].astype(F32), dt)
    return rnd(qs * s[:, :, None], dt).reshape(rows, cols)


def unit(dt):
    return {np.float32: 2.0 ** -24, ml_dtypes.bfloat16: 2.0 ** -9, np.float16: 2.0 ** -11}[dt]


def reference(w, bits, group, sym, dt, eager):
    s, zp = calculate_qparams(w, bits, group, sym, dt)
    q = quantize(w, s, zp, bits, group, dt, eager)
    return s, zp, q


def check_layer(t, prefix, w, bits, group, sym, dtype_name, eager, label):
    """Compares the stored layer `prefix` with the reference recomputed from source weights w."""
    dt = DT[dtype_name]
    rows, cols = w.shape
    g = cols if group == -1 else group
    s_ref, zp_ref, q_ref = reference(w, bits, group, sym, dt, eager)
    packed = t[f"{prefix}.weight_packed"]
    assert packed.dtype == np.int32 and packed.shape == (rows, -(-cols * bits // 32)), \
        (label, packed.dtype, packed.shape)
    shape = t[f"{prefix}.weight_shape"]
    assert shape.dtype == np.int64 and shape.tolist() == [rows, cols], (label, shape)
    scale = t[f"{prefix}.weight_scale"]
    assert scale.dtype == dt and scale.shape == (rows, cols // g), (label, scale.dtype, scale.shape)
    assert np.array_equal(scale.astype(F32).view(np.uint32), s_ref.view(np.uint32)), \
        f"{label}: {np.count_nonzero(scale.astype(F32) != s_ref)} scales differ"
    zkey = f"{prefix}.weight_zero_point"
    if sym:
        assert zkey not in t, (label, "a symmetric layer has no zero point")
        zp = np.zeros((rows, cols // g), dtype=np.int8)
    else:
        zpk = t[zkey]
        assert zpk.dtype == np.int32 and zpk.shape == (-(-rows * bits // 32), cols // g), \
            (label, zpk.dtype, zpk.shape)
        assert np.array_equal(zpk, pack_to_int32(zp_ref, bits, packed_dim=0)), \
            f"{label}: packed zero points differ"
        zp = unpack_from_int32(zpk, bits, rows, packed_dim=0)
        assert np.array_equal(zp, zp_ref), f"{label}: zero points differ"
    ref_words = pack_to_int32(q_ref, bits)
    diff = np.count_nonzero(packed != ref_words)
    if diff:
        q = unpack_from_int32(packed, bits, cols)
        raise AssertionError(f"{label}: {diff} packed words differ "
                             f"({np.count_nonzero(q != q_ref)} codes)")
    q = unpack_from_int32(packed, bits, cols)
    assert np.array_equal(q, q_ref), label
    assert np.array_equal(unpack_from_int32(ref_words, bits, cols), q_ref), (label, "round trip")
    # error bound as in test_quant_ct.c: half a step, plus the dtype's rounding of the
    # parameters (a relative u on at most 2^b steps, four times; eager rounds x/s and +zp too),
    # plus the dequantization's own two roundings in the scale's dtype
    u = unit(dt)
    slack = 0.5 + (6 if eager else 4) * 2 ** bits * u
    srep = np.repeat(s_ref, g, axis=1)
    err = np.abs(dequantize(q, s_ref, zp, group, dt) - w)
    lim = slack * srep * (1 + 2 ** -20) + 2 * u * np.abs(w) + 2 * u * srep * 2 ** bits
    assert np.all(err <= lim), f"{label}: max error {np.max(err / srep):.3f} steps"
    return np.max(err / srep)


def cases(out):
    with open(os.path.join(out, "cases.txt")) as f:
        return [line.split() for line in f if line.strip()]


def test_layers_match_reference():
    cs = cases(sys.argv[1])
    assert len(cs) == 10, cs
    for name, bits, group, sym, dtype_name, eager in cs:
        t = load_file(os.path.join(sys.argv[1], name, "model.safetensors"))
        w = t["src"].astype(F32)
        worst = check_layer(t, "layer", w, int(bits), int(group), sym == "1", dtype_name,
                            eager == "1", name)
        print(f"  {name}: codes, scales, zero points and words match; worst {worst:.3f} steps")


def test_packing_of_the_reference():
    """pack_to_int32 on known values: 4-bit [-8..7] -> nibbles LSB first with +8; 3-bit values
    straddle words; 8-bit four bytes per word."""
    q4 = np.array([[-8, -7, 0, 7, 1, 2, 3, 4, -1]], dtype=np.int8)
    w4 = pack_to_int32(q4, 4)
    assert w4.shape == (1, 2), w4.shape
    assert w4.view(np.uint32)[0, 0] == 0xCBA9F810 and w4[0, 1] == 7, hex(w4.view(np.uint32)[0, 0])
    q3 = np.arange(-4, 4, dtype=np.int8)[np.arange(11) % 8][None, :]
    w3 = pack_to_int32(q3, 3)
    assert w3.shape == (1, 2)
    u = (q3[0].astype(np.int64) + 4)
    stream = sum(int(v) << (3 * i) for i, v in enumerate(u))
    assert int(w3.view(np.uint32)[0, 0]) == stream & 0xFFFFFFFF
    assert int(w3.view(np.uint32)[0, 1]) == stream >> 32
    q8 = np.array([[-128, 127, 0, 1, 5]], dtype=np.int8)
    w8 = pack_to_int32(q8, 8)
    assert w8.view(np.uint32)[0, 0] == 0x8180FF00 and w8[0, 1] == 133
    rng = np.random.default_rng(0)
    for bits in (2, 3, 4, 5, 8):
        lo, hi = qrange(bits)
        q = rng.integers(lo, hi + 1, size=(37, 75)).astype(np.int8)
        assert np.array_equal(unpack_from_int32(pack_to_int32(q, bits), bits, 75), q)
        assert np.array_equal(unpack_from_int32(pack_to_int32(q, bits, 0), bits, 37, 0), q)


if __name__ == "__main__":
    run_tests([test_packing_of_the_reference, test_layers_match_reference])
