// The weight formats of the decode GEMV (gemv.cu): how a lane's 16-byte step of a row becomes
// products with the activations. Each format F gives
//   COLS              columns a step covers (32 for 4-bit codes, 16 for bytes);
// (the fp16 formats share FHalf's mac and give only `decode`, a step of one row as half2 pairs)
//   STEP_SCALE        whether a step loads its scale group's entry;
//   PRE               whether the GEMV always copies a lane's second step to shared memory
//                     before the PDL wait (gemv.cu: launch_b);
//   TALL              whether many-wave grids take a warp a row pair, 16 rows a block
//                     (gemv.cu: tall_fits);
//   XCOPY             whether the staged GEMV (gemv.cu) copies the activation row to shared memory
//                     (the fp16 formats; FI8One rounds it there itself);
//   STAGE             whether the one-row GEMV may take the staged kernel (gemv.cu: stage_fits);
//   STAGE_TC          whether it then takes the tensor-core one (FQ4One: gemv_stage_tc.cuh);
//   Acc               what a lane accumulates per (row, activation row);
//   mac<B, R, XS>     one step of R rows against B activation rows (XS: one row, read from the
//                     staged GEMV's copy, KX::xs);
//   tail<B, R>        what comes after the steps (LLM.int8's outlier columns);
//   finish            the sum of a row's lanes as the float result;
//   prep, smem(cols)  what every block does after the PDL wait, before its steps, and the dynamic
//                     shared memory it takes (FI8One: the activations rounded to int8; else none).
// The fp16 formats (Q4, NF4, FP8) turn codes into half2 pairs by bit operations, sum a step's
// products in half2 (HFMA2), then scale the step's sum and add it in fp32.
#ifndef LB_BACKEND_CUDA_GEMV_FORMATS_CUH
#define LB_BACKEND_CUDA_GEMV_FORMATS_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"

// The weight as the kernel sees it: scales[row * ngroups + step / spg]; tab: NF4's code book as
// the low bytes (tab[0..3]) and high bytes (tab[4..7]) of its 16 fp16 values, 4 a word.
struct KW {
  const uint4 *codes;
  const uint32_t *scales;
  int rows, cols, steps, spg, ngroups;
  uint32_t tab[8];
};

// w as the kernels see it, without its steps (F::COLS gives them: launch in gemv.cu).
static inline KW kw_of(const lb_cuda_qw *w) {
  KW kw = {(const uint4 *)w->codes, (const uint32_t *)w->scales, (int)w->rows, (int)w->cols, 0, 0, (int)w->ngroups, {0}};
  if (w->kind == LB_CUDA_NF4)
    for (int i = 0; i < 16; i++) { // the code book's fp16 bytes, low then high
      const uint16_t h = __half_as_ushort(__float2half(w->code[i]));
      kw.tab[i / 4] |= (uint32_t)(h & 0xFF) << (8 * (i % 4));
      kw.tab[4 + i / 4] |= (uint32_t)(h >> 8) << (8 * (i % 4));
    }
  return kw;
}

// The activations: fp16 rows, and for LLM.int8 their int8 codes, scales and outlier columns.
struct KX {
  const __half *x;
  const int8_t *q;
  const float *sca, *xo;
  const int *nout, *ocol;
  float thr;            // LLM.int8's outlier threshold (FI8One: the GEMV rounds the activations itself)
  const uint8_t *omask; // FI8One: a byte a 8 columns, bit j: column 8 i + j is an outlier
  const uint4 *xs;      // the staged GEMV's copy of the row in shared memory (xs_slot)
};

struct Frag {
  uint4 q;
  uint32_t s;
};

// LLM.int8's activations for batch (<= LB_CUDA_I8X_ROWS) rows of x into i8x (i8x.cu), two launches
// on st; kx gets the int8 codes, scales and outlier columns.
cudaError_t i8x_prep(const lb_cuda_qw *w, const __half *x, const lb_cuda_i8x *i8x, int batch, cudaStream_t st,
                     KX *kx);

// The batch-1 4-bit GEMV on the tensor cores (gemv_tc.cu): whether w takes it at this batch
// (LOWBIT_CUDA_GEMV_TC), and its launch on st (silu: out16 as lb_cuda_gemv_silu).
bool q4tc_fits(const lb_cuda_qw *w, int batch);
cudaError_t q4tc_launch(const lb_cuda_qw *w, const __half *x, float *y, const float *bias, __half *out16, bool acc,
                        bool silu, cudaStream_t st);

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
}
__device__ __forceinline__ __half2 as_h2(uint32_t u) { return *reinterpret_cast<__half2 *>(&u); }
__device__ __forceinline__ uint32_t h2u(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }

// d += A B on the tensor cores: m16n8k16, fp16 fragments, fp32 sums (qmma.cu, gemv_tc.cu)
__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Where the staged GEMV keeps chunk j (8 columns) of step st, a step being NC chunks: the row's
// order with each step's chunks rotated by st / (8 / NC), so that the 8 lanes of a 16-byte read's
// phase (steps st .. st + 7, one chunk each) hit 8 different bank groups, and the copy's writes
// stay within 8 chunks of the row's order (writes far apart, as j * steps + st, measured 2.4x
// slower: BENCHMARKS.md, 2026-11-25).
template <int NC>
__device__ __forceinline__ int xs_slot(int st, int j) {
  return NC * st + (j ^ ((st / (8 / NC)) % NC));
}

// Activation row b's chunk j of step st: from global memory, or (XS, one row) from the staged
// GEMV's copy in shared memory (KX::xs, xs_slot's order).
template <bool XS, int NC>
__device__ __forceinline__ uint4 x_chunk(const KX &x, const KW &w, int b, int st, int j) {
  if constexpr (XS) return x.xs[xs_slot<NC>(st, j)];
  else return __ldg(reinterpret_cast<const uint4 *>(x.x + (size_t)b * w.cols) + (size_t)st * NC + j);
}

// One row's step: the half2 products d[i] * x[i] summed in half2, the sum scaled by sc and added
// to acc in fp32.
template <int N>
__device__ __forceinline__ void step_acc(const __half2 (&d)[N], const __half2 *xh, float sc, float &acc) {
  __half2 a = __float2half2_rn(0.0f);
#pragma unroll
  for (int i = 0; i < N; i++) a = __hfma2(d[i], xh[i], a);
  const float2 f = __half22float2(a);
  acc = fmaf(sc, f.x + f.y, acc);
}

// step_acc over a step st for each row and activation row; N pairs (COLS / 2) of fp16 activations.
template <int B, int R, int N>
__device__ __forceinline__ void dot_rows(const __half2 (&d)[R][N], const float (&sc)[R], const KX &x, const KW &w,
                                         int st, float (&acc)[R][B]) {
#pragma unroll
  for (int b = 0; b < B; b++) {
    uint4 xv[N / 4];
#pragma unroll
    for (int j = 0; j < N / 4; j++) xv[j] = x_chunk<false, N / 4>(x, w, b, st, j);
    const __half2 *xh = reinterpret_cast<const __half2 *>(xv);
#pragma unroll
    for (int r = 0; r < R; r++) step_acc<N>(d[r], xh, sc[r], acc[r][b]);
  }
}

// The fp16 formats: D::decode turns a row's step into N half2 pairs (columns 2i, 2i + 1) and
// returns the float that scales their sum; the products are summed per step (dot_rows).
template <class D, int N>
struct FHalf {
  enum { COLS = 2 * N, STEP_SCALE = 1, PRE = N == 8, TALL = 0, XCOPY = 1, STAGE = 1, STAGE_TC = 0 }; // PRE: FP8 and 8-bit affine (gemv.cu)
  typedef float Acc;
  template <int B, int R, bool XS = false>
  __device__ static void mac(const Frag (&f)[R], const KX &x, const KW &w, int st, float (&acc)[R][B]) {
    if constexpr (XS) { // the row's chunks first (shared memory), then a row at a time (fewer registers)
      uint4 xv[N / 4];
#pragma unroll
      for (int j = 0; j < N / 4; j++) xv[j] = x_chunk<true, N / 4>(x, w, 0, st, j);
      const __half2 *xh = reinterpret_cast<const __half2 *>(xv);
#pragma unroll
      for (int r = 0; r < R; r++) {
        __half2 d[N];
        const float sc = D::decode(f[r], w, d);
        step_acc<N>(d, xh, sc, acc[r][0]);
      }
    } else {
      __half2 d[R][N];
      float sc[R];
#pragma unroll
      for (int r = 0; r < R; r++) sc[r] = D::decode(f[r], w, d[r]);
      dot_rows<B, R, N>(d, sc, x, w, st, acc);
    }
  }
  template <int B, int R>
  __device__ static void tail(const KW &, const KX &, int, int, int, float (&)[R][B]) {}
  __device__ static float finish(const KW &, const KX &, int, int, float a) { return a; }
  __device__ static void prep(const KW &, KX &) {}
  static size_t smem(int) { return 0; }
};

// Affine 4-bit: (word >> 4i) & 0x000F000F | 0x64006400 is the half2 (1024 + q_a, 1024 + q_b) of
// nibbles i and i + 4 (columns 2i, 2i + 1), and subtracting the half2 (1024 + zero) leaves
// q - zero exactly (integer zero points, |q - z| < 16). The dequantization (qweight.cu) uses it too.
__device__ __forceinline__ __half2 q4_pair(uint32_t word, int i, __half2 z2) {
  return __hsub2(as_h2(((word >> (4 * i)) & 0x000F000Fu) | 0x64006400u), z2);
}

// Fractional zero points (LB_CUDA_Q4F, HQQ): the same half2 (1024 + q_a, 1024 + q_b) less 1024 is
// q exactly, and subtracting the fp16 zero rounds q - zero once (to 2^-11 of it).
__device__ __forceinline__ __half2 q4f_pair(uint32_t word, int i, __half2 z2) {
  const __half2 q = __hsub2(as_h2(((word >> (4 * i)) & 0x000F000Fu) | 0x64006400u), __float2half2_rn(1024.0f));
  return __hsub2(q, z2);
}

// (a & M) | O in one LOP3 (the compiler emits two: an instruction takes one 32-bit immediate)
template <uint32_t M, uint32_t O>
__device__ __forceinline__ uint32_t and_or(uint32_t a) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(M), "n"(O));
  return d;
}

// A step of affine 4-bit codes as 16 pairs q - zero, and its scale: FRAC, the zero is the fp16
// entry itself (LB_CUDA_Q4F, q4f_pair); else 1024 + zero (LB_CUDA_Q4, q4_pair).
template <bool FRAC>
__device__ __forceinline__ float q4_decode(const Frag &f, __half2 (&d)[16]) {
  const __half2 sz = as_h2(f.s), z2 = __high2half2(sz);
  const uint32_t wv[4] = {f.q.x, f.q.y, f.q.z, f.q.w};
#pragma unroll
  for (int j = 0; j < 4; j++)
#pragma unroll
    for (int i = 0; i < 4; i++) d[4 * j + i] = FRAC ? q4f_pair(wv[j], i, z2) : q4_pair(wv[j], i, z2);
  return __low2float(sz);
}

struct FQ4 : FHalf<FQ4, 16> {
  __device__ static float decode(const Frag &f, const KW &, __half2 (&d)[16]) { return q4_decode<false>(f, d); }
};
struct FQ4F : FHalf<FQ4F, 16> {
  __device__ static float decode(const Frag &f, const KW &, __half2 (&d)[16]) { return q4_decode<true>(f, d); }
};

// The batch-1 GEMV's decode of the same pairs in fewer instructions (Marlin's): nibbles 1 and 5
// masked in place (& 0x00F000F0) give 1024 + 16 q, which one HFMA2 by 1/16 minus (64 + zero) makes
// q - zero exactly (every value an integer below 2048); one shift by 8 serves nibbles 2 to 7, and
// each mask-and-OR is one LOP3. (The tensor-core product and the GEMV of 2-8 rows keep FQ4's:
// this one measured slower there, BENCHMARKS.md.)
struct FQ4One : FHalf<FQ4One, 16> {
  enum { STAGE_TC = 1 }; // staged: the tensor-core kernel where it fits (gemv_stage_tc.cuh)
  __device__ static float decode(const Frag &f, const KW &, __half2 (&d)[16]) {
    const __half2 sz = as_h2(f.s), z2 = __high2half2(sz);
    const __half2 nz = __hsub2(__float2half2_rn(960.0f), z2); // -(64 + zero)
    const __half2 sixteenth = __float2half2_rn(0.0625f);
    const uint32_t wv[4] = {f.q.x, f.q.y, f.q.z, f.q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint32_t hi = wv[j] >> 8;
      d[4 * j] = __hsub2(as_h2(and_or<0x000F000Fu, 0x64006400u>(wv[j])), z2);
      d[4 * j + 1] = __hfma2(as_h2(and_or<0x00F000F0u, 0x64006400u>(wv[j])), sixteenth, nz);
      d[4 * j + 2] = __hsub2(as_h2(and_or<0x000F000Fu, 0x64006400u>(hi)), z2);
      d[4 * j + 3] = __hfma2(as_h2(and_or<0x00F000F0u, 0x64006400u>(hi)), sixteenth, nz);
    }
    return __low2float(sz);
  }
};

// NF4/FP4: a 16-entry table lookup in registers, on the word's layout (cuda.h). t (KW::tab): the
// low bytes of entries 0-7 and 8-15, then the high bytes of the same, two words each. For the 4
// codes of a selector (3-bit nibbles) PRMT picks each value's low and high byte among entries
// 0-7 and among 8-15; m, 0xFF in the bytes whose code has bit 3 set, chooses (one LOP3 each), and
// two PRMT interleave the low and high bytes into pairs.
__device__ __forceinline__ void nf4_quad(uint32_t sel, uint32_t m, const uint32_t (&t)[8], __half2 &h01,
                                         __half2 &h23) {
  const uint32_t lo = (prmt(t[0], t[1], sel) & ~m) | (prmt(t[2], t[3], sel) & m);
  const uint32_t hi = (prmt(t[4], t[5], sel) & ~m) | (prmt(t[6], t[7], sel) & m);
  h01 = as_h2(prmt(lo, hi, 0x5140u)), h23 = as_h2(prmt(lo, hi, 0x7362u));
}

// A word's 4 pairs (columns 0-1 ... 6-7). The masks are sign-replicating PRMTs (selector 8 + k:
// byte k's bit 7) of the word, where columns 0-3 keep their bit 3, and of the word shifted by 4,
// where columns 4-7 do; the shifts are multiplications (IMAD). 19 ALU instructions a word: the
// one-row GEMV's time follows the instructions it issues (BENCHMARKS.md, 2026-11-24, seventh
// session).
__device__ __forceinline__ void nf4_word(uint32_t w, const uint32_t (&t)[8], __half2 (&d)[4]) {
  const uint32_t sel = w & 0x77777777u;
  nf4_quad(sel, prmt(w, 0u, 0xBA98u), t, d[0], d[1]);
  nf4_quad(__umulhi(sel, 0x10000u), prmt(w * 16u, 0u, 0xBA98u), t, d[2], d[3]);
}

// Column k's code of a word (the dequantization, qweight.cu).
__device__ __forceinline__ uint32_t nf4_code(uint32_t w, int k) {
  const int hb = k < 4 ? 8 * k + 7 : 8 * (k - 4) + 3;
  return (w >> (4 * k) & 7u) | (w >> hb & 1u) << 3;
}

__device__ __forceinline__ void nf4_table(const KW &w, uint32_t (&t)[8]) {
#pragma unroll
  for (int i = 0; i < 8; i++) t[i] = w.tab[i];
}

struct FNF4 : FHalf<FNF4, 16> {
  __device__ static float decode(const Frag &f, const KW &w, __half2 (&d)[16]) {
    uint32_t t[8];
    nf4_table(w, t);
    const uint32_t wv[4] = {f.q.x, f.q.y, f.q.z, f.q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      __half2 q[4];
      nf4_word(wv[j], t, q);
#pragma unroll
      for (int i = 0; i < 4; i++) d[4 * j + i] = q[i];
    }
    return __uint_as_float(f.s);
  }
};

// NF4 at one activation row: each word's four pairs decoded and multiplied before the next word's,
// so that a row's 16 decoded pairs are never live at once (decoding a whole step first took 80
// registers, 3 blocks an SM). A step's products are summed in half2 as dot_rows does, then scaled
// and added in fp32.
struct FNF4One : FHalf<FNF4One, 16> {
  // TALL: a warp a row pair on many-wave grids (gemv.cu: tall_fits); not STAGE: measured slower
  // staged at 4096 x 4096 (6.21 against 5.22 us: BENCHMARKS.md, 2026-11-25)
  enum { TALL = 1, STAGE = 0 };
  template <int B, int R, bool XS = false>
  __device__ static void mac(const Frag (&f)[R], const KX &x, const KW &w, int st, float (&acc)[R][B]) {
    static_assert(B == 1, "one activation row");
    uint32_t t[8];
    nf4_table(w, t);
    __half2 a[R];
#pragma unroll
    for (int r = 0; r < R; r++) a[r] = __float2half2_rn(0.0f);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint4 xv = x_chunk<XS, 4>(x, w, 0, st, j);
#pragma unroll
      for (int r = 0; r < R; r++) {
        const uint32_t v = j == 0 ? f[r].q.x : j == 1 ? f[r].q.y : j == 2 ? f[r].q.z : f[r].q.w;
        __half2 q[4];
        nf4_word(v, t, q);
        a[r] = __hfma2(q[0], as_h2(xv.x), a[r]), a[r] = __hfma2(q[1], as_h2(xv.y), a[r]);
        a[r] = __hfma2(q[2], as_h2(xv.z), a[r]), a[r] = __hfma2(q[3], as_h2(xv.w), a[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
      const float2 s = __half22float2(a[r]);
      acc[r][0] = fmaf(__uint_as_float(f[r].s), s.x + s.y, acc[r][0]);
    }
  }
};

// E4M3: two bytes moved to the high bytes of a half2 (prmt: selector 0x1404 takes bytes 0 and 1,
// 0x3424 bytes 2 and 3), then sign kept and exponent/mantissa shifted down one bit: the fp16 value
// times 2^-8, exact for normal and subnormal codes (the exponent bias 7 becomes fp16's 15), so
// products stay within fp16's range (|w| <= 448 / 256); the step's sum is scaled by 256 * scale.
// The dequantization (qweight.cu) uses it too.
__device__ __forceinline__ __half2 e4m3_pair(uint32_t word, uint32_t sel) {
  const uint32_t u = prmt(word, 0u, sel);
  return as_h2((u & 0x80008000u) | ((u >> 1) & 0x3F803F80u));
}

// Affine 8-bit (LB_CUDA_A8): two bytes under the fp16 exponent of 4 (prmt with 0x44 bytes:
// selector 0x4140 takes bytes 0 and 1, 0x4342 bytes 2 and 3) are 4 + q / 256 exactly, and the
// entry's 4 + zero / 256 leaves (q - zero) / 256 exactly; the step's sum is scaled by 256 * scale.
// The dequantization (qweight.cu) uses it too.
__device__ __forceinline__ __half2 a8_pair(uint32_t word, uint32_t sel, __half2 z2) {
  return __hsub2(as_h2(prmt(word, 0x44444444u, sel)), z2);
}

struct FA8 : FHalf<FA8, 8> {
  __device__ static float decode(const Frag &f, const KW &, __half2 (&d)[8]) {
    const __half2 sz = as_h2(f.s), z2 = __high2half2(sz);
    const uint32_t wv[4] = {f.q.x, f.q.y, f.q.z, f.q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) d[2 * j] = a8_pair(wv[j], 0x4140u, z2), d[2 * j + 1] = a8_pair(wv[j], 0x4342u, z2);
    return 256.0f * __low2float(sz);
  }
};

struct FFP8 : FHalf<FFP8, 8> {
  __device__ static float decode(const Frag &f, const KW &, __half2 (&d)[8]) {
    const uint32_t wv[4] = {f.q.x, f.q.y, f.q.z, f.q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) d[2 * j] = e4m3_pair(wv[j], 0x1404u), d[2 * j + 1] = e4m3_pair(wv[j], 0x3424u);
    return 256.0f * __uint_as_float(f.s);
  }
};

// LLM.int8's activation rounding (bitsandbytes' int8_vectorwise_quant) for 8 consecutive columns,
// shared by i8x.cu's kernels and FI8One so that both give the same codes: the fp16 values as
// floats; their outlier bits (|v| >= thr, with thr > 0; bit j for column j) with m raised to the
// absmax of the others; and their codes (rint of v * isc clamped to [-127, 127], 0 where the
// bit is set) as 8 bytes.
__device__ __forceinline__ void unpack8(uint4 u, float (&v)[8]) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const float2 f = __half22float2(h[j]);
    v[2 * j] = f.x, v[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ uint32_t i8_outliers8(const float (&v)[8], float thr, float &m) {
  uint32_t bits = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const float a = fabsf(v[j]);
    const bool out = thr > 0.0f && a >= thr;
    bits |= (uint32_t)out << j;
    if (!out) m = fmaxf(m, a);
  }
  return bits;
}
__device__ __forceinline__ uint2 i8_codes8(const float (&v)[8], uint32_t bits, float isc) {
  uint32_t lo = 0, hi = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int code = bits >> j & 1 ? 0 : __float2int_rn(fminf(fmaxf(v[j] * isc, -127.0f), 127.0f));
    if (j < 4) lo |= (uint32_t)(code & 0xFF) << (8 * j);
    else hi |= (uint32_t)(code & 0xFF) << (8 * (j - 4));
  }
  return make_uint2(lo, hi);
}

// LLM.int8 (bitsandbytes MatMul8bitLt): int32 dot products of the int8 weight with the int8
// activations (DP4A, exact), and in fp32 the outlier columns, whose activations were zeroed in the
// int8 codes: finish = i * (SCA * SCB) / 127^2 + f * SCB / 127, bitsandbytes' constants.
struct I8Acc {
  int i;
  float f;
};
__device__ __forceinline__ I8Acc operator+(I8Acc a, I8Acc b) { return {a.i + b.i, a.f + b.f}; }
__device__ __forceinline__ I8Acc shfl_xor(I8Acc a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.i, o), __shfl_xor_sync(0xffffffffu, a.f, o)};
}
__device__ __forceinline__ float shfl_xor(float a, int o) { return __shfl_xor_sync(0xffffffffu, a, o); }

struct FI8 {
  enum { COLS = 16, STEP_SCALE = 0, PRE = 0, TALL = 0, XCOPY = 0, STAGE = 1, STAGE_TC = 0 };
  typedef I8Acc Acc;
  template <int B, int R, bool XS = false> // (XS unused: FI8 is never staged)
  __device__ static void mac(const Frag (&f)[R], const KX &x, const KW &w, int st, I8Acc (&acc)[R][B]) {
#pragma unroll
    for (int b = 0; b < B; b++) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4 *>(x.q + (size_t)b * w.cols) + st);
#pragma unroll
      for (int r = 0; r < R; r++) {
        int a = acc[r][b].i;
        a = __dp4a((int)f[r].q.x, (int)xv.x, a), a = __dp4a((int)f[r].q.y, (int)xv.y, a);
        a = __dp4a((int)f[r].q.z, (int)xv.z, a), a = __dp4a((int)f[r].q.w, (int)xv.w, a);
        acc[r][b].i = a;
      }
    }
  }
  // the outlier columns o = k0, k0 + stride ...: sum of q * x in fp32
  template <int B, int R>
  __device__ static void tail(const KW &w, const KX &x, int row0, int k0, int stride, I8Acc (&acc)[R][B]) {
    const int nout = *x.nout;
    const int8_t *codes = reinterpret_cast<const int8_t *>(w.codes);
    for (int o = k0; o < nout; o += stride) {
      const int c = x.ocol[o];
#pragma unroll
      for (int r = 0; r < R; r++) {
        const int row = row0 + r < w.rows ? row0 + r : row0;
        const float q = (float)codes[(size_t)row * w.cols + c];
#pragma unroll
        for (int b = 0; b < B; b++) acc[r][b].f = fmaf(q, x.xo[(size_t)b * w.cols + o], acc[r][b].f);
      }
    }
  }
  __device__ static float finish(const KW &w, const KX &x, int row, int b, I8Acc a) {
    const float scb = __uint_as_float(w.scales[row]);
    return (float)a.i * (x.sca[b] * scb) * 6.200124e-05f + a.f * (scb * 7.874015718698502e-3f);
  }
  __device__ static void prep(const KW &, KX &) {}
  static size_t smem(int) { return 0; }
};

// LLM.int8 at one activation row without i8x.cu's two launches: after the PDL wait every block
// rounds the row to int8 itself, through i8_scan's and i8_quant's helpers (i8_outliers8,
// i8_codes8: the same codes and scale), into shared memory: the codes (cols bytes), a byte a 8 columns whose bits mark
// the outlier columns (|x| >= threshold), and the scale. A step then takes its codes from there,
// and a step with outlier columns (rare) adds q * x of those in fp32, as FI8's tail does. A lane's
// second step is copied to shared memory before the PDL wait (PRE), for the rounding to overlap.
struct FI8One : FI8 {
  enum { PRE = 1 };
  static size_t smem(int cols) { return (size_t)cols + (size_t)cols / 8 + 16; }
  __device__ static void prep(const KW &w, KX &x) {
    extern __shared__ uint4 dsm[];
    int8_t *q = reinterpret_cast<int8_t *>(dsm);
    uint8_t *mask = reinterpret_cast<uint8_t *>(q + w.cols);
    float *sc = reinterpret_cast<float *>(mask + w.cols / 8 + (4 - (w.cols / 8) % 4) % 4);
    __shared__ float wmax[8]; // a warp's maximum (the GEMV's blocks are 8 warps)
    const uint4 *x8 = reinterpret_cast<const uint4 *>(x.x);
    const int n8 = w.cols / 8, t = threadIdx.x;
    float m = 0.0f;
    for (int i = t; i < n8; i += blockDim.x) {
      float v[8];
      unpack8(__ldg(x8 + i), v);
      mask[i] = (uint8_t)i8_outliers8(v, x.thr, m);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((t & 31) == 0) wmax[t >> 5] = m;
    __syncthreads();
    float s = wmax[0];
    for (int k = 1; k < (int)blockDim.x / 32; k++) s = fmaxf(s, wmax[k]);
    const float isc = s > 0.0f ? 127.0f / s : 0.0f;
    for (int i = t; i < n8; i += blockDim.x) {
      float v[8];
      unpack8(__ldg(x8 + i), v);
      *reinterpret_cast<uint2 *>(q + 8 * i) = i8_codes8(v, mask[i], isc);
    }
    if (t == 0) *sc = s;
    __syncthreads();
    x.q = q, x.sca = sc, x.omask = mask;
  }
  template <int B, int R, bool XS = false> // (XS: its codes are in shared memory either way)
  __device__ static void mac(const Frag (&f)[R], const KX &x, const KW &w, int st, I8Acc (&acc)[R][B]) {
    static_assert(B == 1, "one activation row");
    const uint4 xv = *reinterpret_cast<const uint4 *>(x.q + 16 * st);
#pragma unroll
    for (int r = 0; r < R; r++) {
      int a = acc[r][0].i;
      a = __dp4a((int)f[r].q.x, (int)xv.x, a), a = __dp4a((int)f[r].q.y, (int)xv.y, a);
      a = __dp4a((int)f[r].q.z, (int)xv.z, a), a = __dp4a((int)f[r].q.w, (int)xv.w, a);
      acc[r][0].i = a;
    }
    uint32_t m = x.omask[2 * st] | (uint32_t)x.omask[2 * st + 1] << 8;
    while (m) { // the step's outlier columns: codes were 0 there; q * x in fp32
      const int j = __ffs(m) - 1;
      m &= m - 1;
      const float xj = __half2float(x.x[16 * st + j]);
#pragma unroll
      for (int r = 0; r < R; r++) {
        const uint32_t wd = j < 4 ? f[r].q.x : j < 8 ? f[r].q.y : j < 12 ? f[r].q.z : f[r].q.w;
        acc[r][0].f = fmaf((float)(int8_t)(wd >> (8 * (j & 3))), xj, acc[r][0].f);
      }
    }
  }
  template <int B, int R>
  __device__ static void tail(const KW &, const KX &, int, int, int, I8Acc (&)[R][B]) {}
};

#endif
