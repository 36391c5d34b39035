"""lowbit's bitsandbytes output against an independent numpy implementation of bitsandbytes'
quantize_4bit (NF4/FP4, compress_statistics) and int8_vectorwise_quant, written from the semantics of
bitsandbytes' functional.py and its CUDA kernels (kQuantizeBlockwise, dQuantizeNF4/FP4, dQuantize).
torch is not installed here, so the bitsandbytes package itself cannot run.

argv[1]: the folder test_quant_bnb wrote (model.safetensors with "<case>.*" bnb tensors and
"src.<case>" fp32 source weights). Everything is compared exactly: each step is an fp32 operation
whose result numpy reproduces bit for bit. Two choices are bitsandbytes' own non-determinism, made
the same way on both sides and stated where they are made: the mean of absmax (torch reduces in an
unspecified order: here a sequential fp64 sum, rounded once) and torch's CPU linspace inside
create_dynamic_map (its vectorized path differs by an ulp between CPUs: here its scalar formula)."""
import json
import os
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(__file__))
from common import run_tests  # noqa: E402

F = np.float32
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], F)
FP4 = np.array([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0,
                -2.0, -3.0], F) / F(12)
# dQuantizeNF4's pivots: the fp64 midpoints of the code book, as fp32 literals; `x > t` per level
NF4_T = np.array([(float(a) + float(b)) / 2 for a, b in zip(NF4[:-1], NF4[1:])], F)
# dQuantizeFP4's pivots on |x|, as the kernel writes them (rounded decimals, not exact midpoints),
# in the order of the magnitudes 0, .0625, 2, 3, 4, 6, 8, 12 (/12) and their sign-less indices
FP4_T = np.array([0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333], F)
FP4_MAG_IDX = np.array([0, 1, 6, 7, 4, 5, 2, 3], np.uint8)

if len(sys.argv) < 2:
    sys.exit("usage: quant_bnb_ref.py FOLDER (written by test_quant_bnb)")


class Lazy(dict):
    """Tensors read on demand: numpy cannot hold the BF16 biases the file also has."""

    def __init__(self, path):
        super().__init__()
        self.f = safe_open(path, "np")

    def __iter__(self):
        return iter(self.f.keys())

    def __getitem__(self, k):
        return self.f.get_tensor(k)


D = Lazy(os.path.join(sys.argv[1], "model.safetensors"))


def nf4_index(x):
    # a consistent binary tree over sorted pivots = the count of pivots strictly below x (NaN: 0)
    return (x[:, None] > NF4_T[None, :]).sum(axis=1).astype(np.uint8)


def fp4_index(x):
    sign = np.where(x < 0, 8, 0).astype(np.uint8)
    mag = (np.abs(x)[:, None] > FP4_T[None, :]).sum(axis=1)
    return FP4_MAG_IDX[mag] + sign


def torch_linspace_f32(start, end, steps):
    # aten linspace_kernel (scalar path): fp32 step, first half from start, second half from end
    s, e = F(start), F(end)
    step = F((e - s) / F(steps - 1))
    half = steps // 2
    return np.array([s + step * F(k) if k < half else e - step * F(steps - 1 - k)
                     for k in range(steps)], F)


def dynamic_map():
    # create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
    data = []
    for i in range(7):
        b = torch_linspace_f32(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / F(2)
        data += list(F(10.0 ** (i - 6)) * means)  # the python scalar is cast to the tensor's fp32
        data += list(F(-(10.0 ** (i - 6))) * means)
    data += [F(0), F(1)]
    assert len(data) == 256
    return np.array(sorted(data), F)


DYN = dynamic_map()


def dquantize(code, x):
    # kQuantizeBlockwise's dQuantize<0>, vectorized: 7 halving steps, then pivot vs neighbour
    n = x.shape[0]
    pivot = np.full(n, 127)
    up_p, lo_p = np.full(n, 255), np.zeros(n, int)
    lower, upper = np.full(n, F(-1)), np.full(n, F(1))
    val = code[pivot]
    i = 64
    while i > 0:
        gt = x > val
        lo_p = np.where(gt, pivot, lo_p)
        lower = np.where(gt, val, lower)
        up_p = np.where(gt, up_p, pivot)
        upper = np.where(gt, upper, val)
        pivot = np.where(gt, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    upper = np.where(up_p == 255, code[255], upper)
    lower = np.where(lo_p == 0, code[0], lower)
    gt = x > val
    pick_up = x > (upper + val) * F(0.5)
    pick_lo = x < (lower + val) * F(0.5)
    return np.where(gt, np.where(pick_up, up_p, pivot),
                    np.where(pick_lo, lo_p, pivot)).astype(np.uint8)


def blockwise_absmax(flat, bs):
    n = flat.size
    nb = -(-n // bs)
    padded = np.zeros(nb * bs, F)  # the kernel loads missing items as 0
    padded[:n] = flat
    return np.abs(padded.reshape(nb, bs)).max(axis=1), padded


def inv(a):
    with np.errstate(divide="ignore"):
        return F(1) / a  # 1.0f / absmax; 0 gives inf, and 0 * inf = NaN -> index 0 in both trees


def quantize_4bit(w, nf4, bs, nested):
    absmax, padded = blockwise_absmax(w.reshape(-1), bs)
    with np.errstate(invalid="ignore"):
        x = (padded.reshape(-1, bs) * inv(absmax)[:, None]).reshape(-1)
    idx = nf4_index(x) if nf4 else fp4_index(x)
    n = w.size
    codes = idx[:n]
    pad = (nf4_index if nf4 else fp4_index)(np.zeros(1, F))[0]
    full = np.concatenate([codes, [pad]]) if n % 2 else codes
    packed = (full[0::2] << 4 | full[1::2]).astype(np.uint8).reshape(-1, 1)
    out = {"weight": packed, "absmax": absmax, "quant_map": NF4 if nf4 else FP4}
    qs = {"quant_type": "nf4" if nf4 else "fp4", "blocksize": bs}
    if nested:
        offset = F(np.cumsum(absmax.astype(np.float64))[-1] / absmax.size)
        a = absmax - offset
        nabs, pa = blockwise_absmax(a, 256)
        with np.errstate(invalid="ignore"):
            xs = (pa.reshape(-1, 256) * inv(nabs)[:, None]).reshape(-1)[:a.size]
        out.update(absmax=dquantize(DYN, xs), nested_absmax=nabs, nested_quant_map=DYN)
        qs["offset"] = offset
    return out, qs


def check_4bit(case, nf4, nested):
    w = D["src." + case]
    ref, qs = quantize_4bit(w, nf4, 64, nested)
    for k, v in ref.items():
        got = D[f"{case}.weight" + ("" if k == "weight" else "." + k)]
        assert got.dtype == v.dtype and got.shape == v.shape, (case, k, got.dtype, got.shape)
        assert np.array_equal(got.view(np.uint8), v.view(np.uint8)), (case, k, np.argwhere(got != v)[:5])
    kind = "nf4" if nf4 else "fp4"
    raw = D[f"{case}.weight.quant_state.bitsandbytes__{kind}"]
    state = json.loads(bytes(raw))
    want = {"quant_type": kind, "blocksize": 64, "dtype": state["dtype"], "shape": list(w.shape)}
    assert state["dtype"] in ("float16", "bfloat16", "float32")
    if nested:  # QuantState.as_dict(packed=True) order; the offset as python float
        want.update(nested_blocksize=256, nested_dtype="float32", nested_offset=float(qs["offset"]))
    assert bytes(raw) == json.dumps(want).encode(), (bytes(raw), json.dumps(want))
    # dequantize_4bit: the error against the source is within half the largest code gap
    am = ref["absmax"]
    if nested:
        am = (DYN[ref["absmax"]] * np.repeat(ref["nested_absmax"], 256)[:am.size]) + qs["offset"]
    codes = np.stack([ref["weight"][:, 0] >> 4, ref["weight"][:, 0] & 15], 1).reshape(-1)[:w.size]
    deq = ref["quant_map"][codes] * np.repeat(am, 64)[:w.size]
    true_am, _ = blockwise_absmax(w.reshape(-1), 64)
    gap = np.max(np.diff(np.sort(ref["quant_map"]))) / 2
    slack = np.abs(np.repeat(am - true_am, 64)[:w.size])  # the nested absmax error
    # x 1.00001 and + 1e-7: fp32 rounding of w / absmax and of code * absmax (a few ulps)
    assert np.all(np.abs(w.reshape(-1) - deq) <= np.repeat(true_am, 64)[:w.size] * gap * 1.00001 + slack + 1e-7)


def cases(method):
    return sorted(k[4:] for k in D if k.startswith("src." + method + "."))


def test_nf4():
    for c in cases("nf4"):
        check_4bit(c, True, False)


def test_nf4_double_quant():
    for c in cases("nf4_dq"):
        check_4bit(c, True, True)


def test_fp4():
    for c in cases("fp4"):
        check_4bit(c, False, False)


def test_fp4_double_quant():
    for c in cases("fp4_dq"):
        check_4bit(c, False, True)


def test_int8():
    for c in cases("int8"):
        # Int8Params: .to(float16), then int8_vectorwise_quant: SCB = row absmax,
        # round(A * (127 / SCB)) with torch.round (half to even); an all-zero row gives 0
        h = D["src." + c].astype(np.float16).astype(F)
        scb = np.abs(h).max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.rint(h * (F(127) / scb)[:, None])
        q = np.nan_to_num(q, nan=0.0).astype(np.int8)
        assert np.array_equal(D[c + ".SCB"], scb), c
        assert np.array_equal(D[c + ".weight"], q), (c, np.argwhere(D[c + ".weight"] != q)[:5])
        fmt = D[c + ".weight_format"]
        assert fmt.dtype == np.uint8 and fmt.shape == () and int(fmt) == 0, c


def test_dynamic_map_is_bnbs():
    # the same map through numpy's fp64 linspace: equal up to torch's linspace rounding (1e-6)
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1, 2 ** i + 1)
        m = (b[:-1] + b[1:]) / 2
        data += list(10.0 ** (i - 6) * m) + list(-(10.0 ** (i - 6)) * m)
    alt = np.array(sorted(data + [0.0, 1.0]))
    assert np.allclose(DYN, alt, rtol=1e-6, atol=0) and DYN[0] > -1 and DYN[-1] == 1


if __name__ == "__main__":
    run_tests([test_nf4, test_nf4_double_quant, test_fp4, test_fp4_double_quant, test_int8,
               test_dynamic_map_is_bnbs])
