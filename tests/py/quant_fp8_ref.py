"""FP8 quantization against an independent numpy + ml_dtypes reference.

tests/test_quant_fp8.c writes one folder per case (source weights "src" and the layer it wrote in
the compressed-tensors or fine-grained layout) and cases.txt. Here the codes and scales are
recomputed the way the reference packages do it and must match lowbit bit for bit:

  compressed-tensors (calculate_qparams + _quantize): scale = amax / 448 (in the weight's dtype),
  clamp(min=finfo(float32).eps); q = fp8(clamp(w / scale, -448, 448)).
  Transformers FineGrainedFP8: m = 448 / amax; q = fp8(clamp(w * m, -448, 448)); scale_inv = 1 / m.

In bf16 compute every PyTorch op's result is rounded to bf16 (the op runs in fp32 and is rounded
once), which is what rnd() below does after each float32 numpy op.
"""
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from st_numpy import load_file  # noqa: E402
from common import run_tests  # noqa: E402

OUT = sys.argv[1]
F32 = np.float32
E4M3 = ml_dtypes.float8_e4m3fn




def rnd(x, bf16):
    x = np.asarray(x, dtype=F32)
    return x.astype(ml_dtypes.bfloat16).astype(F32) if bf16 else x


def blocks(rows, cols, br, bc):
    for r0 in range(0, rows, br):
        for c0 in range(0, cols, bc):
            yield r0 // br, c0 // bc, slice(r0, min(r0 + br, rows)), slice(c0, min(c0 + bc, cols))


def reference(w, br, bc, rule, bf16):
    rows, cols = w.shape
    nbr, nbc = -(-rows // br), -(-cols // bc)
    q = np.zeros(w.shape, dtype=np.uint8)
    s = np.zeros((nbr, nbc), dtype=F32)
    fmax = F32(448.0)
    eps = np.finfo(np.float32).eps
    for i, j, rs, cs in blocks(rows, cols, br, bc):
        x = w[rs, cs]
        amax = np.abs(x).max()
        if rule == "ct":
            sc = max(rnd(amax / fmax, bf16), eps)
            y = rnd(x / F32(sc), bf16)
        elif amax > 0:
            m = rnd(fmax / amax, bf16)
            y = rnd(x * m, bf16)
            sc = rnd(F32(1.0) / m, bf16)
        else:  # Transformers gives NaN codes here; lowbit documents codes 0 and eps
            sc, y = eps, np.zeros_like(x)
        s[i, j] = sc
        q[rs, cs] = np.clip(y, -fmax, fmax).astype(E4M3).view(np.uint8)
    return q, s


def cases():
    with open(os.path.join(OUT, "cases.txt")) as f:
        return [line.split() for line in f if line.strip()]


def stored_scale(t, layout, shape):
    name = "layer.weight_scale" if layout == "ct" else "layer.weight_scale_inv"
    s = t[name]
    return np.asarray(s, dtype=F32).reshape(shape), s.shape, str(s.dtype)


def test_codes_and_scales_match():
    cs = cases()
    assert len(cs) == 7, cs
    for name, layout, strat, rule, compute, br, bc in cs:
        t = load_file(os.path.join(OUT, name, "model.safetensors"))
        w = t["src"].astype(F32)
        br, bc = int(br), int(bc)
        q_ref, s_ref = reference(w, br, bc, rule, compute == "BF16")
        wq = t["layer.weight"]
        assert wq.dtype == E4M3, (name, wq.dtype)
        s, raw_shape, raw_dtype = stored_scale(t, layout, s_ref.shape)
        # shapes as compressed-tensors / Transformers create them
        rows, cols = w.shape
        want = s_ref.shape
        if layout == "ct":
            want = {"0": (1,), "1": (rows, 1), "2": s_ref.shape}[strat]
        assert tuple(raw_shape) == tuple(want), (name, raw_shape, want)
        if layout == "fg":
            assert raw_dtype == "float32", (name, raw_dtype)
        q = wq.view(np.uint8)
        diff = np.count_nonzero(q != q_ref)
        assert diff == 0, f"{name}: {diff} codes differ"
        assert np.array_equal(s.view(np.uint32), s_ref.view(np.uint32)), f"{name}: scales differ"


def test_dequant_error():
    """Dequantized weights within 2^-4 relative (normal codes) of the source."""
    for name, layout, strat, rule, compute, br, bc in cases():
        t = load_file(os.path.join(OUT, name, "model.safetensors"))
        w = t["src"].astype(F32)
        q = t["layer.weight"].astype(F32)
        _, s_ref = reference(w, int(br), int(bc), rule, compute == "BF16")
        s = np.repeat(np.repeat(s_ref, int(br), 0), int(bc), 1)[: w.shape[0], : w.shape[1]]
        y = w / s
        normal = np.abs(y) >= 2.0 ** -6
        err = np.abs(q - y)
        # bf16 compute rounds w / s to bf16 first (2^-9 relative); the Transformers rule in bf16
        # also stores s = bf16(1 / m), so s * m differs from 1 by up to 2^-9 more
        extra = (2.0 ** -7 if rule == "hf" else 2.0 ** -8) if compute == "BF16" else 2.0 ** -22
        assert np.all(err[normal] <= (2.0 ** -4 + extra) * np.abs(y[normal]) * 1.0001), name
        assert np.all(err[~normal] <= 2.0 ** -10 + extra * np.abs(y[~normal])), name


def act_ref(x, group):
    """W8A8 activations as Transformers' act_quant computes them in fp32: per row and block of
    `group` columns s = amax / 448, q = fp8(x / s) (ml_dtypes' round to nearest even; |x / s| <= 448
    up to fp32 rounding, clipped as the saturating cast does), then q * s."""
    out = np.empty_like(x)
    for c0 in range(0, x.shape[1], group):
        b = x[:, c0:c0 + group]
        s = (np.abs(b).max(axis=1, keepdims=True) / F32(448)).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(b / s, -448, 448).astype(E4M3).astype(F32)
        out[:, c0:c0 + group] = np.where(s > 0, q * s, F32(0))
    return out


def test_act_quant_matches():
    """lowbit's W8A8 activations equal the reference bit for bit, in 1 x 128 blocks, per token,
    with a short last block and with one static scale; a block of zeros stays zero."""
    t = load_file(os.path.join(OUT, "act", "model.safetensors"))
    x, x2 = t["x"].astype(F32), t["x2"].astype(F32)
    for got, want in ((t["g128"], act_ref(x, 128)), (t["token"], act_ref(x, x.shape[1])),
                      (t["x2_g128"], act_ref(x2, 128))):
        got = got.astype(F32)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
            f"{np.count_nonzero(got != want)} activations differ"
    assert not np.any(t["g128"][5, 128:256]), "a block of zeros"
    # static (a checkpoint's input_scale): x / s clamped to +-448 (compressed-tensors' _quantize)
    s = F32(0.02)
    want = np.clip(x / s, -448, 448).astype(E4M3).astype(F32) * s
    got = t["static"].astype(F32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"static: {np.count_nonzero(got != want)} activations differ"
    assert np.count_nonzero(np.abs(x) > 448 * s) > 10, "some inputs saturate"
    # the blocks differ from one scale per row where a row's range is wide
    assert np.count_nonzero(t["g128"] != t["token"]) > x.size // 4


def test_act_linear():
    """A packed FP8 weight's product with W8A8 activations (decode: 3 rows, prefill: 40) against
    float64 math on the reference activations and the dequantized weight. Bound: the fp32 sums of
    lowbit's kernels, 2^-20 of sum |x_q w| per output (a few hundred terms, fp32's 2^-24 each,
    with room for a blocked order)."""
    t = load_file(os.path.join(OUT, "act", "model.safetensors"))
    x = t["x"].astype(F32)
    xq = act_ref(x, 128).astype(np.float64)
    codes = t["layer.weight"].astype(np.float64)
    s = t["layer.weight_scale_inv"].astype(np.float64)
    w = codes * np.repeat(np.repeat(s, 128, 0), 128, 1)[: codes.shape[0], : codes.shape[1]]
    for name, n in (("y3", 3), ("y40", 40)):
        y = t[name].astype(np.float64)
        ref = xq[:n] @ w.T
        bound = (np.abs(xq[:n]) @ np.abs(w).T) * 2.0 ** -20
        assert np.all(np.abs(y - ref) <= bound), (name, float(np.max(np.abs(y - ref) - bound)))
        # and W8A8 is not W8A16: the unquantized activations give a measurably different product
        assert np.max(np.abs(x[:n].astype(np.float64) @ w.T - ref)) > 100 * np.max(bound), name


if __name__ == "__main__":
    run_tests([test_codes_and_scales_match, test_dequant_error, test_act_quant_matches,
               test_act_linear])
