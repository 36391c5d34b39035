#!/usr/bin/env python3
"""Writes the reference tables that tests/test_dtype.c compares lowbit's dtype conversions with.

Usage: dtype_ref.py OUTDIR

Every file is a raw little-endian array without a header; its length gives the element count.
Type keys (element size): f64 (8), f32 (4), f16 (2), bf16 (2), e4m3 (1, float8_e4m3fn), e5m2 (1).

  SRC_in.bin        inputs (bit patterns) for SRC in f64, f32
  SRC_DST.bin       SRC converted to DST by a plain (non-saturating) cast
  SRC_DST_sat.bin   the same, saturating: clip to +-max(DST), then cast, where max(DST) < max(SRC);
                    a widening pair (F16 -> F32, E4M3 -> BF16 ...) is the plain cast

For SRC in f16, bf16, e4m3, e5m2 the inputs are all bit patterns in order (0 .. 2^bits - 1), so
SRC_f32.bin are the decode tables. f32_f64*.bin cover only the first entries of f32_in.bin (the
specials and every f16 and bf16 value); every other SRC_DST file has one entry per input.

Where the references come from:
  f32 -> f16, f32 -> f64, f64 -> f32, f64 -> f16     numpy astype (numpy rounds f64 -> f16 directly)
  f32 -> bf16 / e4m3 / e5m2, decoding of bf16 / fp8   ml_dtypes astype
  f64 -> e4m3 / e5m2    the ml_dtypes scalar constructor, which rounds directly from double. The
                        ml_dtypes float64 *array* cast rounds through float32 (double rounding), so
                        it is not used.
  f64 -> bf16           ml_dtypes rounds f64 -> bf16 through float32 in every path (array cast and
                        scalar constructor). The reference is therefore: round the double to float32
                        with round-to-odd (exact for a target with at least 2 fewer bits), then the
                        ml_dtypes float32 -> bf16 cast. This script checks that this construction
                        agrees with the direct numpy f16 and ml_dtypes fp8 scalar references on all
                        f64 inputs, and that every reference used differs from double rounding.
  f16/bf16/fp8 -> X     decode to float32 with the reference above, then the float32 -> X
                        reference (widening is exact). Checked against the direct numpy / ml_dtypes
                        cast of the pair: equal, except for NaN payload / quiet bits.
NaN bit patterns are those of the references: numpy keeps the top payload bits of a NaN when it
narrows to f16 (and makes a vanished payload 1); ml_dtypes writes a canonical quiet NaN with the sign.
"""
import os
import sys

import ml_dtypes
import numpy as np

T = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
     "e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
SMALL = ["f16", "bf16", "e4m3", "e5m2"]
UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}
MAX = {k: float(ml_dtypes.finfo(t).max) for k, t in T.items()}


def bits(a):
    return np.ascontiguousarray(a).view(UINT[a.dtype.itemsize])


def from_bits(b, key):
    return np.asarray(b, UINT[np.dtype(T[key]).itemsize]).view(T[key])


def all_patterns(key):
    n = 1 << (8 * np.dtype(T[key]).itemsize)
    return from_bits(np.arange(n), key)


def from32(x, dst, sat):
    """float32 array -> dst: the reference cast, after clipping when saturating."""
    if dst == "f64":
        y = x.astype(np.float64)
        return np.clip(y, -MAX[dst], MAX[dst]) if sat else y
    if sat:
        x = np.clip(x, np.float32(-MAX[dst]), np.float32(MAX[dst]))
    return x.astype(T[dst])


def round_to_odd_f32(d):
    """float64 -> float32 rounded to odd: truncate, then set the last bit when inexact."""
    f = d.astype(np.float32)
    back = f.astype(np.float64)
    inexact = np.isfinite(d) & (back != d)
    b = bits(f).copy()
    b[inexact & (np.abs(back) > np.abs(d))] -= 1  # RNE went away from zero: step back
    b[inexact] |= 1
    return b.view(np.float32)


def fp8_scalar(d, key):
    t = T[key]
    return np.array([t(v) for v in d.tolist()], dtype=t)


def from64(d, dst, sat):
    """float64 array -> dst, rounded once (see the module comment for each reference)."""
    if sat:
        d = np.clip(d, -MAX[dst], MAX[dst])
    if dst in ("f32", "f16"):
        return d.astype(T[dst])
    if dst == "bf16":
        return round_to_odd_f32(d).astype(T[dst])
    return fp8_scalar(d, dst)


def same(a, b):
    """Equal bit patterns, or both NaN with the same sign."""
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    nan = np.isnan(fa) & np.isnan(fb) & (np.signbit(fa) == np.signbit(fb))
    return (bits(a) == bits(b)) | nan


def f32_inputs(rng):
    sp = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
          0x7FA00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F801000, 0x7F802000, 0xFFBFFFFF, 0x7FC00001,
          0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x007FFFFF, 0x00000001, 0x80000001, 0x3F800000]
    every16 = np.arange(1 << 16, dtype=np.uint32)
    f16w = bits(from_bits(every16, "f16").astype(np.float32))
    head = [np.array(sp, np.uint32), f16w, every16 << 16]  # f32_f64 covers these
    parts = []
    # fp8: midpoints between neighbours (and past the max: the overflow threshold), +-1 ulp
    for key in ("e4m3", "e5m2", "f16", "bf16"):
        v = all_patterns(key).astype(np.float64)
        v = np.unique(v[np.isfinite(v) & (v >= 0)])
        v = np.append(v, 2 * v[-1] - v[-2])
        m = ((v[:-1] + v[1:]) / 2).astype(np.float32)
        if key in ("f16", "bf16"):  # the grid below has them all; keep the overflow threshold
            m = m[-1:]
        m = np.concatenate([m, np.nextafter(m, np.float32(np.inf)), np.nextafter(m, np.float32(0))])
        parts += [bits(m), bits(-m), bits(np.array([v[-1], -v[-1]], np.float32))]
        # values in the subnormal range and just above
        tiny = float(ml_dtypes.finfo(T[key]).smallest_normal)
        r = rng.uniform(-2 * tiny, 2 * tiny, 20000 if key in ("e4m3", "e5m2") else 5000)
        parts.append(bits(r.astype(np.float32)))
    # every upper 16-bit pattern with the low bits at the rounding boundaries: f16 drops 13 bits
    # (retained bits 13..15 all combinations, tie - 1 / tie / tie + 1), bf16 drops 16 bits
    lows = [r << 13 | t for r in range(8) for t in (0x0FFF, 0x1000, 0x1001)]
    lows += [0x7FFF, 0x8000, 0x8001, 0x0001, 0xFFFF]
    parts.append(((every16 << 16)[:, None] | np.array(lows, np.uint32)[None, :]).ravel())
    # f16 subnormals of the two top binades drop 14 and 15 bits
    for field, k in ((112, 14), (111, 15)):
        ups = np.array([s << 31 | field << 23 | t << 16 for s in (0, 1) for t in range(128)],
                       np.uint32)
        tie = 1 << (k - 1)
        lo = [r << k | t for r in range(1 << (16 - k)) for t in (tie - 1, tie, tie + 1)]
        parts.append((ups[:, None] | np.array(lo, np.uint32)[None, :]).ravel())
    parts.append(rng.integers(0, 1 << 32, 2_000_000, dtype=np.uint32))
    head = np.concatenate(head)
    return np.concatenate([head] + parts).view(np.float32), len(head)


def f64_inputs(rng):
    sp = [0, 1 << 63, 0x7FF0 << 48, 0xFFF0 << 48, 0x7FF8 << 48, 0xFFF8 << 48, 0x7FF0000000000001,
          0x7FF0040000000000, 0xFFF4000000000000, 0x7FFFFFFFFFFFFFFF, 0x7FF0000020000000,
          0x7FF0000000001000, 0xFFF0000000000001, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 1,
          0x000FFFFFFFFFFFFF, 0x8000000000000001, 0x0010000000000000, 0x3FF0000000000000]
    parts = [np.array(sp, np.uint64).view(np.float64)]
    # midpoints between neighbours of every format (and past its max), exact and just off: by one
    # double ulp and by a relative 2^-30, below float32 resolution, where rounding via float32 fails
    for key in SMALL:
        v = all_patterns(key).astype(np.float64)
        v = np.unique(v[np.isfinite(v) & (v >= 0)])
        v = np.append(v, 2 * v[-1] - v[-2])
        m = (v[:-1] + v[1:]) / 2
        m = m * rng.choice([-1.0, 1.0], m.size)
        parts += [m, np.nextafter(m, np.inf), np.nextafter(m, -np.inf), m * (1 + 2.0**-30),
                  m * (1 - 2.0**-30)]
    # float32 midpoints (f64 -> f32) and the float32 overflow threshold
    x = rng.integers(0, 0x7F800000, 30000, dtype=np.uint32).view(np.float32).astype(np.float64)
    m = (x + np.nextafter(x.astype(np.float32), np.float32(np.inf)).astype(np.float64)) / 2
    m = np.append(m, MAX["f32"] + 2.0**103) * rng.choice([-1.0, 1.0], m.size + 1)
    parts += [m, np.nextafter(m, np.inf), np.nextafter(m, -np.inf)]
    # random doubles around the fp8 / f16 ranges, around the bf16 / f32 extremes, any bits
    for lo, hi, n in ((-30, 20, 200000), (-160, -120, 15000), (120, 130, 15000)):
        e = rng.integers(lo, hi, n).astype(np.uint64) + np.uint64(1023)
        s = rng.integers(0, 2, n).astype(np.uint64) << np.uint64(63)
        mant = rng.integers(0, 1 << 52, n, dtype=np.uint64)
        parts.append((s | e << np.uint64(52) | mant).view(np.float64))
    parts.append(rng.integers(0, 1 << 64, 50000, dtype=np.uint64).view(np.float64))
    return np.concatenate(parts)


def check_direct(d):
    """Which references round float64 directly (no double rounding through float32)?"""
    d = d[np.isfinite(d)]
    d32 = d.astype(np.float32)

    def differs(a, b):
        return int(np.count_nonzero(~same(a, b)))

    f16 = d.astype(np.float16)
    assert differs(f16, d32.astype(np.float16)) > 0, "numpy f64->f16 rounds via float32"
    rto = round_to_odd_f32(d)
    assert not differs(rto.astype(np.float16), f16), "round-to-odd disagrees with numpy f16"
    for key in ("e4m3", "e5m2"):
        direct = fp8_scalar(d, key)
        assert differs(direct, d32.astype(T[key])) > 0, f"ml_dtypes scalar f64->{key} not direct"
        assert not differs(rto.astype(T[key]), direct), f"round-to-odd disagrees with {key} scalar"
        print(f"ml_dtypes float64 array cast -> {key}: {differs(d.astype(T[key]), direct)} of "
              f"{d.size} differ from direct rounding (it rounds through float32)")
    bf = rto.astype(T["bf16"])
    assert differs(bf, d32.astype(T["bf16"])) > 0
    print(f"ml_dtypes float64 -> bfloat16: array cast {differs(d.astype(T['bf16']), bf)}, scalar "
          f"{differs(np.array([T['bf16'](v) for v in d[:50000].tolist()], T['bf16']), bf[:50000])} of 50000 "
          f"differ from direct rounding; using round-to-odd float32 + ml_dtypes instead")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: dtype_ref.py OUTDIR")
    assert sys.byteorder == "little", "the tables are written in host order"
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    np.seterr(all="ignore")
    rng = np.random.default_rng(20240607)
    total = 0

    def write(name, a):
        nonlocal total
        a = bits(a)
        a.tofile(os.path.join(out, name + ".bin"))
        total += a.nbytes

    def write_pair(src, dst, plain, sat, inputs):
        # a saturating cast leaves NaN as the plain cast does
        nan = np.isnan(inputs.astype(np.float64))
        assert (bits(plain)[nan] == bits(sat)[nan]).all(), f"{src}->{dst}: NaN differs when saturating"
        if MAX[dst] >= MAX[src]:  # saturation only applies where the range narrows
            sat = plain
        write(f"{src}_{dst}", plain)
        write(f"{src}_{dst}_sat", sat)

    for src in SMALL:
        x = all_patterns(src)
        dec = x.astype(np.float32)
        for dst in T:
            if dst == src:
                continue
            ref = from32(dec, dst, False)
            ok = same(ref, x.astype(T[dst]))
            assert ok.all(), f"{src}->{dst}: direct cast differs from decode+cast at {np.flatnonzero(~ok)[:5]}"
            write_pair(src, dst, ref, from32(dec, dst, True), dec)

    x, nhead = f32_inputs(rng)
    write("f32_in", x)
    for dst in SMALL:
        write_pair("f32", dst, from32(x, dst, False), from32(x, dst, True), x)
    write_pair("f32", "f64", from32(x[:nhead], "f64", False), from32(x[:nhead], "f64", True), x[:nhead])

    d = f64_inputs(rng)
    check_direct(d)
    write("f64_in", d)
    for dst in ["f32"] + SMALL:
        write_pair("f64", dst, from64(d, dst, False), from64(d, dst, True), d)
    print(f"dtype_ref: {x.size} f32 and {d.size} f64 inputs, {total / 1e6:.1f} MB in {out}")


if __name__ == "__main__":
    main()
