// The staged one-row GEMV (gemv.cu: gemv_staged) for 4-bit codes with integer zero points
// (LB_CUDA_Q4: GPTQ, AWQ, RTN) and scale groups of a multiple of 128 columns, with the products
// on the tensor cores. Included by gemv.cu after gemv_staged, whose staging it shares: before the
// PDL wait one thread asks the copy engine for the block's 16 rows (codes and scale entries);
// after it the block triggers the next launch and takes the activation row (stage_start).
//
// The idea: in the staged kernel all of a launch's math comes after its wait, and the register
// decode takes 9 ALU instructions a word and 4 HFMA2 (FQ4One). Here a word takes 5 (one shift,
// four LOP3), and its 8 products go to two mma. Measured (BENCHMARKS.md, 2026-11-25, twelfth
// session): the math after the wait takes the same 1-2 us either way, bound by neither issue nor
// shared memory, so this form is opt-in (gemv.cu: stage_tc_fits).
//
// The decode leaves the codes offset, exactly: nibbles 0 and 4 of a word (columns 0, 1) masked
// into the mantissa under the exponent of 1024 are the half2 (1024 + q0, 1024 + q1); nibbles 1
// and 5 (columns 2, 3) masked in place (bits 4-7, 16 q) under the exponent of 64 are (64 + q2,
// 64 + q3), as 64 (1 + 16 q / 1024) = 64 + q; the word shifted by 8 gives columns 4-7 the same
// way. So with E and O, the sums of a 128-column chunk's activations in columns 8j + {0,1,4,5}
// and 8j + {2,3,6,7}, a row's chunk is
//   sum (q - z) x = D - (1024 + z) E - (64 + z) O,   D = sum over the chunk of (offset code) x,
// D from the mma in fp32 (products of fp16 values are exact in fp32), E and O summed once a
// block in fp32 as the row is copied to shared memory. The scale entry is the half2 (scale,
// 1024 + z) of FQ4.
//
// The mma (m16n8k16): A holds the block's 16 rows, rows g and g + 8 for lane 4 g + t; warp k
// takes the 128-column chunks k, k + 8, ..., its lane t the chunk's step t (32 columns) of both
// rows, word j's pairs being two mma's k-pairs (t, t + 4). Every lane with the same t takes the
// same columns, so B's column 0, which lanes 0-3 give (their steps' activations), meets the
// right codes in every row: c0 and c2 of lane 4 g are rows g and g + 8's sums for the chunk. The
// other lanes give zeros for B's other columns and load no activations, so that a warp's read of
// them is one shared-memory wavefront instead of four.
//
// The rows' codes are kept an odd multiple of 64 bytes apart (stc_pitch; then a copy a row) so
// that the two rows of a quarter warp's 16-byte reads fall in different banks.
#ifndef LB_BACKEND_CUDA_GEMV_STAGE_TC_CUH
#define LB_BACKEND_CUDA_GEMV_STAGE_TC_CUH

enum { STC_CHUNK = 128 }; // columns a chunk: a warp's 4 lanes of a row, a step each

// Bytes from a row's codes to the next's in shared memory: 64 more than 128-byte multiples
// (a row's bytes are a multiple of 64 where cols % 128 == 0).
__host__ __device__ static inline uint32_t stc_pitch(const KW &w) {
  const uint32_t rb = (uint32_t)w.steps * 16;
  return rb % 128 ? rb : rb + 64;
}

// The dynamic shared memory: per chunk the float2 (E, O), the 8 warps' partial sums of the 16
// rows, the row (xs_slot's order), the codes (rows a pitch apart), the scale entries' span.
__host__ __device__ static inline StageLayout stc_layout(const KW &w) {
  StageLayout l = StageLayout::of(w, (uint32_t)(w.cols / STC_CHUNK) * 8 + 8 * STAGE_ROWS * 4, true);
  const uint32_t more = STAGE_ROWS * (stc_pitch(w) - (uint32_t)w.steps * 16);
  l.scales += more, l.bytes += more;
  return l;
}

template <bool SILU>
__global__ void __launch_bounds__(256, 4) gemv_staged_tc(const KW w, const KX x0, float *__restrict__ y,
                                                         const float *__restrict__ bias, __half *__restrict__ out16,
                                                         bool accumulate, StageLayout ly) {
#if LB_TMA
  extern __shared__ __align__(128) uint8_t sm[];
  __shared__ uint64_t bar;
#ifdef LB_GEMV_STAMPS
  unsigned long long tg[4]; // start, wait returned, rows landed, sums ready
#endif
  STAMP(0);
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r0 = blockIdx.x * STAGE_ROWS, nr = min(STAGE_ROWS, w.rows - r0);
  const uint32_t pitch = stc_pitch(w);
  uint32_t s_off;
  const PostWait pw = stage_start(w, r0, nr, ly, sm, &bar, pitch, {x0.x, y, bias, out16, accumulate}, &s_off);
  STAMP(1);
  const int chunks = w.cols / STC_CHUNK;
  float2 *eo = reinterpret_cast<float2 *>(sm);
  float *part = reinterpret_cast<float *>(sm + chunks * 8);
  uint4 *xs = reinterpret_cast<uint4 *>(sm + ly.xs);
  // the row to shared memory (xs_slot's order, 4 chunks of 8 columns a step), 16 threads a
  // 128-column chunk summing its E and O (cols % 128 == 0: a half-warp is all in or all out);
  // XI chunks a thread loaded before any is used (one wait for the L2, not XI)
  constexpr int XI = 3;
  const uint4 *xg = reinterpret_cast<const uint4 *>(pw.x);
  for (int b = 0; b < w.cols / 8; b += XI * 256) {
    uint4 v[XI];
#pragma unroll
    for (int k = 0; k < XI; k++) {
      const int i = b + k * 256 + (int)threadIdx.x;
      v[k] = i < w.cols / 8 ? __ldcg(xg + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < XI; k++) {
      const int i = b + k * 256 + (int)threadIdx.x;
      const float2 a = __half22float2(as_h2(v[k].x)), c = __half22float2(as_h2(v[k].z));
      const float2 p = __half22float2(as_h2(v[k].y)), q = __half22float2(as_h2(v[k].w));
      float e = (a.x + a.y) + (c.x + c.y), o = (p.x + p.y) + (q.x + q.y);
#pragma unroll
      for (int m = 8; m > 0; m >>= 1) e += shfl_xor(e, m), o += shfl_xor(o, m);
      if (i < w.cols / 8) {
        xs[xs_slot<4>(i / 4, i % 4)] = v[k];
        if ((lane & 15) == 0) eo[i / 16] = make_float2(e, o);
      }
    }
  }
  __syncthreads();
  mbar_wait(&bar, 0);
  STAMP(2);
  const int g = lane >> 2, t = lane & 3, cpg = w.spg / 4; // chunks a scale group
  const uint4 *ca = reinterpret_cast<const uint4 *>(sm + ly.codes + g * pitch);
  const uint4 *cb = reinterpret_cast<const uint4 *>(sm + ly.codes + (g + 8) * pitch); // (rows past nr: whatever
                                                                                        // is there; unused)
  const uint32_t *sa = reinterpret_cast<const uint32_t *>(sm + ly.scales + s_off) + (size_t)g * w.ngroups;
  const uint32_t *sb = sa + (size_t)8 * w.ngroups;
  float acc0 = 0.0f, acc1 = 0.0f;
  for (int ch = wib; ch < chunks; ch += 8) {
    const int st = 4 * ch + t;
    const uint4 qa = ca[st], qb = cb[st];
    uint4 xv[4] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    if (g == 0) // B's column 0
#pragma unroll
      for (int j = 0; j < 4; j++) xv[j] = xs[xs_slot<4>(st, j)];
    const uint32_t wa[4] = {qa.x, qa.y, qa.z, qa.w}, wb[4] = {qb.x, qb.y, qb.z, qb.w};
    float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}}; // two chains of 4 mma
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint32_t *xw = reinterpret_cast<const uint32_t *>(&xv[j]);
      const uint32_t ha = wa[j] >> 8, hb = wb[j] >> 8;
      mma16816(d[j & 1], and_or<0x000F000Fu, 0x64006400u>(wa[j]), and_or<0x000F000Fu, 0x64006400u>(wb[j]),
               and_or<0x00F000F0u, 0x54005400u>(wa[j]), and_or<0x00F000F0u, 0x54005400u>(wb[j]), xw[0], xw[1]);
      mma16816(d[j & 1], and_or<0x000F000Fu, 0x64006400u>(ha), and_or<0x000F000Fu, 0x64006400u>(hb),
               and_or<0x00F000F0u, 0x54005400u>(ha), and_or<0x00F000F0u, 0x54005400u>(hb), xw[2], xw[3]);
    }
    const float2 s = eo[ch];
    const int grp = cpg == 1 ? ch : ch / cpg;
    const float2 za = __half22float2(as_h2(sa[grp])), zb = __half22float2(as_h2(sb[grp])); // (scale, 1024 + z)
    acc0 = fmaf(za.x, (d[0][0] + d[1][0]) - za.y * s.x - (za.y - 960.0f) * s.y, acc0);
    acc1 = fmaf(zb.x, (d[0][2] + d[1][2]) - zb.y * s.x - (zb.y - 960.0f) * s.y, acc1);
  }
  if (t == 0) part[wib * STAGE_ROWS + g] = acc0, part[wib * STAGE_ROWS + g + 8] = acc1;
  __syncthreads();
#ifdef LB_GEMV_STAMPS
  if (threadIdx.x == 0) stamp_record(w.codes, tg);
#endif
  if (threadIdx.x < STAGE_ROWS / 2 && 2 * (int)threadIdx.x < nr) {
    const int r = 2 * threadIdx.x;
    float v[2] = {0.0f, 0.0f};
#pragma unroll
    for (int k = 0; k < 8; k++) v[0] += part[k * STAGE_ROWS + r], v[1] += part[k * STAGE_ROWS + r + 1];
    put_rows<SILU, 2>(w, r0 + r, 0, v, pw.y, pw.bias, pw.out16, pw.acc);
  }
#endif
}

#endif
