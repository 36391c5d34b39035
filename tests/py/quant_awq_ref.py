"""Checks lowbit's AutoAWQ checkpoints (written by test_quant_awq into argv[1]) against an independent
numpy implementation of AutoAWQ's packing: WQLinear_GEMM.from_linear (codes and zeros packed along the
output dim in the interleaved order [0, 2, 4, 6, 1, 3, 5, 7]) and WQLinear_GEMV.from_linear (plain
order along the input dim, zeros and scales padded to calculate_zeros_width), and of its unpacking
(packing_utils.unpack_awq, reverse_awq_order, dequantize_gemm). Both directions must be bit-exact:
numpy packs lowbit's inputs into the same words, and numpy's dequantization of lowbit's files equals
(q - zero) * scale computed from the inputs."""
import os
import sys

import numpy as np
from safetensors.numpy import load_file

from common import run_tests

OUT = sys.argv[1]
LAYERS = {  # name: (out, in, group, bias); keep in sync with L in tests/test_quant_awq.c
    "m.a": (256, 384, 128, True), "m.b": (96, 256, 64, False), "m.c": (128, 512, 32, True),
    "m.d": (64, 128, 128, False), "m.e": (64, 1024, 64, True), "m.z": (32, 256, 64, True),
}
ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
REVERSE = [0, 4, 1, 5, 2, 6, 3, 7]
PACK = 8  # 32 // w_bit, w_bit = 4


def zeros_width(in_features, group):
    """AutoAWQ gemv.calculate_zeros_width (its make_divisible is a ceiling division)."""
    mult = 1 if group >= 128 else {64: 2, 32: 4}[group]
    base = -(-(in_features // group) // PACK)
    return -(-base // mult) * mult


def pack_cols(v, order):
    """ORs column col*8 + order[i] of v [n, m] into nibble i of word column col -> int32 [n, m/8]."""
    v = v.astype(np.uint32)
    out = np.zeros((v.shape[0], v.shape[1] // PACK), np.uint32)
    for col in range(out.shape[1]):
        for i in range(PACK):
            out[:, col] |= v[:, col * PACK + order[i]] << np.uint32(4 * i)
    return out.view(np.int32)


def pack_gemm(q, scale, zero):
    """q [out, in] codes, scale/zero [out, G] -> qweight [in, out/8], qzeros [G, out/8], scales [G, out]."""
    return pack_cols(q.T, ORDER), pack_cols(zero.T, ORDER), scale.T.astype(np.float16)


def pack_gemv(q, scale, zero, group):
    R, C = q.shape
    G = scale.shape[1]
    Z = zeros_width(C, group)
    qscales = np.zeros((R, Z * PACK), np.float16)
    qscales[:, :G] = scale
    qzeros = np.zeros((R, Z), np.uint32)
    z = zero.astype(np.uint32)
    for col in range(-(-G // PACK)):
        for i in range(PACK):
            if col * PACK + i < G:
                qzeros[:, col] |= z[:, col * PACK + i] << np.uint32(4 * i)
    return pack_cols(q, list(range(PACK))), qzeros.view(np.int32), qscales


def unpack_nibbles(words):
    """unpack_awq: int32 [n, m] -> [n, 8m], nibble i of word k at column 8k + i (arithmetic shift)."""
    shifts = np.arange(0, 32, 4, dtype=np.int32)
    return (words[:, :, None] >> shifts[None, None, :]).astype(np.int8).reshape(words.shape[0], -1)


def dequant_gemm(qweight, qzeros, scales, group):
    """packing_utils.dequantize_gemm -> fp16 [in, out], plus the same in fp32."""
    iw, iz = unpack_nibbles(qweight), unpack_nibbles(qzeros)
    rev = np.arange(iz.shape[-1]).reshape(-1, PACK)[:, REVERSE].reshape(-1)
    iw, iz = iw[:, rev] & 15, iz[:, rev] & 15
    s = np.repeat(scales, group, axis=0)
    iz = np.repeat(iz, group, axis=0)
    diff = iw - iz  # int8, as torch keeps it
    return diff.astype(np.float16) * s, diff.astype(np.float32) * s.astype(np.float32)


def dequant_gemv(qweight, qzeros, scales, group, in_features):
    """The gemv kernel's reading of the layout -> fp32 [out, in] and the padding (must be zero)."""
    G = in_features // group
    iw = unpack_nibbles(qweight) & 15
    iz = (unpack_nibbles(qzeros) & 15)
    z = np.repeat(iz[:, :G], group, axis=1)
    s = np.repeat(scales[:, :G].astype(np.float32), group, axis=1)
    return (iw - z).astype(np.float32) * s, iz[:, G:], scales[:, G:]


def inputs(src, name):
    q = src[f"src.{name}.q"].astype(np.int32)
    s, z = src[f"src.{name}.scale"], src[f"src.{name}.zero"]
    assert s.dtype == np.float32 and np.array_equal(s, s.astype(np.float16).astype(np.float32))
    assert np.array_equal(z, np.round(z)) and z.min() >= 0 and z.max() <= 15
    return q, s, z


def expected(q, s, z, group):
    """(q - zero) * scale from lowbit's inputs, fp32 [out, in] (exact: small ints times fp16 values)."""
    return (q - np.repeat(z, group, axis=1).astype(np.int32)).astype(np.float32) * np.repeat(s, group, axis=1)


def check_bias(ck, src, name, bias):
    if bias:
        assert ck[f"{name}.bias"].dtype == np.float16, name
        assert np.array_equal(ck[f"{name}.bias"], src[f"src.{name}.bias"].astype(np.float16)), name
    else:
        assert f"{name}.bias" not in ck, name


def test_gemm():
    src = load_file(os.path.join(OUT, "source/model.safetensors"))
    ck = load_file(os.path.join(OUT, "gemm/model.safetensors"))
    for name, (R, C, group, bias) in LAYERS.items():
        q, s, z = inputs(src, name)
        assert q.shape == (R, C) and s.shape == (R, C // group), name
        qw, qz, sc = pack_gemm(q, s, z)
        assert ck[f"{name}.qweight"].dtype == np.int32 and ck[f"{name}.qzeros"].dtype == np.int32
        assert np.array_equal(ck[f"{name}.qweight"], qw), f"{name}: qweight"
        assert np.array_equal(ck[f"{name}.qzeros"], qz), f"{name}: qzeros"
        assert ck[f"{name}.scales"].dtype == np.float16
        assert np.array_equal(ck[f"{name}.scales"], sc), f"{name}: scales"
        check_bias(ck, src, name, bias)
        d16, d32 = dequant_gemm(ck[f"{name}.qweight"], ck[f"{name}.qzeros"], ck[f"{name}.scales"], group)
        want = expected(q, s, z, group)
        assert np.array_equal(d32, want.T), f"{name}: dequantized"
        assert np.array_equal(d16, want.T.astype(np.float16)), f"{name}: dequantized fp16"


def test_gemv():
    src = load_file(os.path.join(OUT, "source/model.safetensors"))
    ck = load_file(os.path.join(OUT, "gemv/model.safetensors"))
    padded = 0
    for name, (R, C, group, bias) in LAYERS.items():
        q, s, z = inputs(src, name)
        qw, qz, sc = pack_gemv(q, s, z, group)
        Z = zeros_width(C, group)
        assert ck[f"{name}.qzeros"].shape == (R, Z) and ck[f"{name}.scales"].shape == (R, 8 * Z), name
        assert np.array_equal(ck[f"{name}.qweight"], qw), f"{name}: qweight"
        assert np.array_equal(ck[f"{name}.qzeros"], qz), f"{name}: qzeros"
        assert ck[f"{name}.scales"].dtype == np.float16
        assert np.array_equal(ck[f"{name}.scales"], sc), f"{name}: scales"
        check_bias(ck, src, name, bias)
        d32, zpad, spad = dequant_gemv(ck[f"{name}.qweight"], ck[f"{name}.qzeros"], ck[f"{name}.scales"],
                                       group, C)
        assert np.array_equal(d32, expected(q, s, z, group)), f"{name}: dequantized"
        assert not zpad.any() and not spad.any(), f"{name}: padding is not zero"
        padded += Z * PACK > C // group
    assert padded >= 3, "the test layers must exercise the zero-width padding"


def test_zero_range():
    src = load_file(os.path.join(OUT, "source/model.safetensors"))
    z = np.concatenate([src[f"src.{n}.zero"].ravel() for n in LAYERS])
    assert z.min() == 0 and z.max() == 15, "zeros must reach both ends of [0, 15]"
    assert len(np.unique(src["src.m.z.zero"])) == 16 and len(np.unique(src["src.m.z.q"])) == 16


if __name__ == "__main__":
    run_tests([test_gemm, test_gemv, test_zero_range])
