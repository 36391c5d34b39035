// Next-token choice on the device (cuda.h, lb_cuda_sample): the host sampler's rule
// (src/model/sampler.c) without sorting and without copying the logits back. One block a row.
//
// The probabilities p = exp((l - max) / T) go to a scratch row. The order the host ranks
// candidates in (logit descending, then id ascending) is walked by radix selection over the
// logits' bits, made unsigned so that they order like the values: four passes of 8 bits, each a
// histogram of the count and the mass of the keys that share the bits fixed so far, find the key
// at which a running count (top-k) or mass (top-p, the draw) first reaches its target. Equal
// keys are one group of equal p, in id order: the position inside it is arithmetic, its id a
// scan in token order.
//
// Cost: the first pass's histogram is made once, with the probabilities, and serves every
// selection. When the first digit's bucket and those above it hold at most CAP tokens (the usual
// case: the crossing lies among the few large logits), the second pass also lists their ids in
// shared memory, and the later passes, and later selections in those buckets, read that list
// instead of the row.
//
// Mass is fixed point (p * 2^shift in 64-bit integers, shift = min(47, 63 - bits(vocab)), so no
// sum can overflow and a warp's sums fit 32-bit halves): integer sums do not
// depend on the order the atomics land in, so a choice is the same every run. The host sums
// doubles in order; the two disagree only for a draw within about vocab * 2^-shift (2^-29 of the
// mass at 128256 entries) of a boundary between two tokens.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"

typedef unsigned long long u64;
enum { ST = 1024, NW = ST / 32, CAP = 8192 };

struct Smem {
  u64 mass[256], mass0[256]; // the current pass's histogram; the first pass's, kept
  unsigned cnt[256], cnt0[256];
  int list[CAP]; // the ids whose key's top byte is list_bin or more (list_bin 256: none listed)
  int nlist, list_bin;
  u64 w64[NW];
  float wv[NW];
  int wi[NW];
  u64 r64[2];
  unsigned r32[3];
  int found;
};

// p of a logit as the host computes it: the difference in float, times 1 / T in double, the
// exponential of that as a float (rounded once, from double: glibc's expf is within 0.502 ulp).
__device__ __forceinline__ float prob_of(float l, float mx, double it) {
  const float p = (float)exp((double)(float)((double)(l - mx) * it));
  return p >= 0.0f ? p : 0.0f; // (NaN from NaN or infinite logits: 0)
}
__device__ __forceinline__ u64 fixed_of(float p, double scale) { return p > 0.0f ? __double2ull_rn((double)p * scale) : 0ull; }

// A logit's rank key: larger logits, larger keys (-0 as +0, NaN below everything); and back.
__device__ __forceinline__ unsigned key_of(float l) {
  if (l != l) return 0u;
  const unsigned u = __float_as_uint(l == 0.0f ? 0.0f : l);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
__device__ __forceinline__ float logit_of(unsigned k) { return __uint_as_float(k & 0x80000000u ? k & 0x7fffffffu : ~k); }

// Adds (1, f) to digit d's bin for each lane with use, one atomic a digit present in the warp
// (__match_any_sync groups the lanes; 32-bit warp sums of f's 24-bit halves, as f < 2^48). Every
// lane of the warp calls it. Measured on the H100 (BENCHMARKS.md): plain shared-memory atomics
// were 3 to 25 times slower (a 64-bit one is a compare-and-swap loop, and most tokens fall in a
// few first-pass bins), a loop over the digits present by ballots 1.3 to 1.4 times.
__device__ __forceinline__ void hist_add(bool use, int d, u64 f, unsigned *cnt, u64 *mass) {
  const unsigned in = __ballot_sync(0xffffffffu, use);
  if (!use) return;
  const unsigned peers = __match_any_sync(in, d);
  const unsigned lo = __reduce_add_sync(peers, (unsigned)(f & 0xffffffu)), hi = __reduce_add_sync(peers, (unsigned)(f >> 24));
  if ((int)(threadIdx.x & 31) == __ffs(peers) - 1) {
    atomicAdd(&cnt[d], (unsigned)__popc(peers));
    if (lo | hi) atomicAdd(&mass[d], ((u64)hi << 24) + lo);
  }
}

// Calls f(i, ok, L[i]) for the ids 0 .. V - 1 (or the listed ids), the lanes of a warp together
// (ok false past the end). A warp takes 4 x 32 consecutive ids a round, their 4 loads issued
// before any is used: one block does the row, and its time is mostly the L2's latency.
template <class F>
__device__ __forceinline__ void sweep(const Smem &s, bool listed, int64_t V, const float *L, F f) {
  const int lane = threadIdx.x & 31;
  if (listed) {
    for (int j0 = threadIdx.x & ~31; j0 < s.nlist; j0 += ST) {
      const int j = j0 + lane;
      const bool ok = j < s.nlist;
      const int64_t i = ok ? s.list[j] : 0;
      f(i, ok, ok ? L[i] : 0.0f);
    }
    return;
  }
  for (int64_t j0 = (int64_t)(threadIdx.x >> 5) * 128; j0 < V; j0 += 4 * ST) {
    float l[4];
#pragma unroll
    for (int e = 0; e < 4; e++) l[e] = j0 + 32 * e + lane < V ? L[j0 + 32 * e + lane] : 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++) f(j0 + 32 * e + lane, j0 + 32 * e + lane < V, l[e]);
  }
}

// The block's sum of v (every thread gets it).
__device__ u64 block_sum(u64 v, Smem &s) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads(); // s.w64 may still be read
  if ((threadIdx.x & 31) == 0) s.w64[threadIdx.x >> 5] = v;
  __syncthreads();
  u64 t = 0;
  for (int w = 0; w < NW; w++) t += s.w64[w];
  return t;
}

// The exclusive prefix of v over the threads in order.
__device__ u64 block_scan(u64 v, Smem &s) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  u64 inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const u64 u = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += u;
  }
  __syncthreads();
  if (lane == 31) s.w64[w] = inc;
  __syncthreads();
  u64 before = 0;
  for (int i = 0; i < w; i++) before += s.w64[i];
  return before + inc - v;
}

// The first id (token order) at which the running sum of weight(i) reaches target (>= 1), or -1.
// Each thread sums a contiguous chunk; the thread whose chunk holds the crossing walks it.
template <class Wt>
__device__ int64_t find_in_order(int64_t V, u64 target, Wt weight, Smem &s) {
  const int64_t chunk = (V + ST - 1) / ST, a = threadIdx.x * chunk, b = a + chunk < V ? a + chunk : V;
  u64 mine = 0;
#pragma unroll 8
  for (int64_t i = a; i < b; i++) mine += weight(i);
  const u64 before = block_scan(mine, s);
  if (threadIdx.x == 0) s.r64[0] = ~0ull;
  __syncthreads();
  if (before < target && target <= before + mine) {
    u64 acc = before;
    for (int64_t i = a; i < b; i++)
      if ((acc += weight(i)) >= target) {
        s.r64[0] = (u64)i;
        break;
      }
  }
  __syncthreads();
  const u64 r = s.r64[0];
  __syncthreads();
  return r == ~0ull ? -1 : (int64_t)r;
}

// Where, over the digits of a histogram from the largest down, the running count (or mass) from
// `have` first reaches need: the digit, the count and mass of the digits above it, its count
// (warp 0 computes; s.found and s.r32/r64 get the result).
__device__ void find_digit(const unsigned *cnt, const u64 *mass, bool by_mass, u64 need, Smem &s) {
  const int lane = threadIdx.x & 31;
  u64 c = 0, m = 0; // lane l: digits 255 - 8l down to 248 - 8l
  for (int j = 0; j < 8; j++) c += cnt[255 - 8 * lane - j], m += mass[255 - 8 * lane - j];
  u64 ce = c, me = m; // inclusive scans over the lanes, then exclusive
  for (int o = 1; o < 32; o <<= 1) {
    const u64 cu = __shfl_up_sync(0xffffffffu, ce, o), mu = __shfl_up_sync(0xffffffffu, me, o);
    if (lane >= o) ce += cu, me += mu;
  }
  ce -= c, me -= m;
  if (lane == 0) s.found = 0;
  __syncwarp();
  if ((by_mass ? me : ce) < need && need <= (by_mass ? me + m : ce + c)) {
    for (int j = 0; j < 8; j++) {
      const int d = 255 - 8 * lane - j;
      if ((by_mass ? me + mass[d] : ce + cnt[d]) >= need) {
        s.r32[0] = (unsigned)d, s.r32[1] = (unsigned)ce, s.r32[2] = cnt[d], s.r64[1] = me, s.found = 1;
        break;
      }
      ce += cnt[d], me += mass[d];
    }
  }
}

// The place in the ranked order where the running count (by_mass false) or mass first reaches
// target (>= 1): the key there, how many keys rank above it and their mass, how many equal it;
// found false when the whole row does not reach target.
struct Sel {
  unsigned key, above, equal;
  u64 mass_above;
  bool found;
};

__device__ Sel select_ranked(const float *L, const float *P, int64_t V, bool by_mass, u64 target, double scale,
                             Smem &s) {
  Sel r = {0u, 0u, 0u, 0ull, true};
  for (int pass = 0; pass < 4; pass++) {
    const int lo = 24 - 8 * pass; // this pass's digit: key bits lo .. lo + 7; the bits above fixed
    const unsigned *cnt = pass ? s.cnt : s.cnt0;
    const u64 *mass = pass ? s.mass : s.mass0;
    bool listed = false;
    if (pass > 0) {
      listed = s.list_bin <= (int)(r.key >> 24);
      // (after the first pass, r.above and r.equal count the buckets above and this one)
      const bool collect = pass == 1 && !listed && r.above + r.equal <= CAP;
      __syncthreads(); // every thread has read list_bin
      for (int b = threadIdx.x; b < 256; b += ST) s.cnt[b] = 0, s.mass[b] = 0;
      if (collect && threadIdx.x == 0) s.nlist = 0, s.list_bin = (int)(r.key >> 24);
      __syncthreads();
      sweep(s, listed, V, L, [&](int64_t i, bool ok, float l) {
        const unsigned k = ok ? key_of(l) : 0u;
        const bool use = ok && (k >> (lo + 8)) == (r.key >> (lo + 8));
        hist_add(use, (k >> lo) & 255, use ? fixed_of(P[i], scale) : 0ull, s.cnt, s.mass);
        if (collect) { // the ids of this bucket and those above, a slot a lane from one atomic a warp
          const bool take = ok && (k >> 24) >= (r.key >> 24);
          const unsigned in = __ballot_sync(0xffffffffu, take);
          int base = 0;
          if ((threadIdx.x & 31) == 0 && in) base = atomicAdd(&s.nlist, __popc(in));
          base = __shfl_sync(0xffffffffu, base, 0);
          if (take) s.list[base + __popc(in & ((1u << (threadIdx.x & 31)) - 1))] = (int)i;
        }
      });
      __syncthreads();
    }
    if (threadIdx.x < 32) find_digit(cnt, mass, by_mass, target - (by_mass ? r.mass_above : r.above), s);
    __syncthreads();
    if (!s.found) {
      r.found = false;
      __syncthreads();
      return r;
    }
    r.key |= s.r32[0] << lo, r.above += s.r32[1], r.mass_above += s.r64[1], r.equal = s.r32[2];
    __syncthreads(); // s is reused
  }
  return r;
}

struct ArgMax {
  float v;
  int64_t i;
};
__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) { return b.v > a.v || (b.v == a.v && b.i < a.i) ? b : a; }

__global__ void __launch_bounds__(ST) sample_k(const float *__restrict__ logits, float *__restrict__ probs, int64_t V,
                                                const lb_cuda_pick *__restrict__ picks, int32_t *__restrict__ ids) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ Smem s;
  const float *L = logits + (int64_t)blockIdx.x * V;
  float *P = probs + (int64_t)blockIdx.x * V;
  const lb_cuda_pick pk = picks[blockIdx.x];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  // the argmax, the lowest id on ties (NaN never wins; all NaN or -inf: id 0, greedy)
  ArgMax a = {-INFINITY, V};
  sweep(s, false, V, L, [&](int64_t i, bool ok, float l) {
    if (ok && l > a.v) a = {l, i};
  });
  for (int o = 16; o > 0; o >>= 1) a = better(a, {__shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o)});
  if (lane == 0) s.wv[w] = a.v, s.wi[w] = (int)a.i;
  for (int b = threadIdx.x; b < 256; b += ST) s.cnt0[b] = 0, s.mass0[b] = 0;
  if (threadIdx.x == 0) s.list_bin = 256;
  __syncthreads();
  for (int i = 0; i < NW; i++) a = better(a, {s.wv[i], (int64_t)s.wi[i]});
  const int64_t best = a.i < V ? a.i : 0;
  if (pk.temperature == 0 || pk.top_k == 1 || a.i >= V) {
    if (threadIdx.x == 0) ids[blockIdx.x] = (int32_t)best;
    return;
  }
  const float mx = a.v;
  const double t = 1.0 / pk.temperature; // (as the host: a multiply a token)
  const int bits = 64 - __clzll((long long)V), shift = 63 - bits < 47 ? 63 - bits : 47;
  const double scale = ldexp(1.0, shift);
  const int64_t K = pk.top_k > 0 && pk.top_k < V ? pk.top_k : V;
  const bool uncut = K == V && pk.top_p >= 1;
  u64 mine = 0; // the probabilities, their total and (for a selection) the first pass's histogram
  sweep(s, false, V, L, [&](int64_t i, bool ok, float l) {
    const float p = ok ? prob_of(l, mx, t) : 0.0f;
    const u64 f = fixed_of(p, scale);
    if (ok) P[i] = p;
    mine += f;
    if (!uncut) hist_add(ok, key_of(l) >> 24, f, s.cnt0, s.mass0);
  });
  const u64 total = block_sum(mine, s); // (its barriers publish P and the histogram)
  // mass of j candidates of key k
  auto group_mass = [&](unsigned k, u64 j) { return j * fixed_of(prob_of(logit_of(k), mx, t), scale); };
  int32_t id;
  if (uncut) { // no cut: the draw in token order, as the host
    const u64 target = (u64)floor(pk.u * (double)total) + 1;
    const int64_t i = find_in_order(V, target, [&](int64_t j) { return fixed_of(P[j], scale); }, s);
    id = (int32_t)(i >= 0 ? i : V - 1);
  } else {
    u64 kmass = total; // the mass of the K best
    if (K < V) {
      const Sel k = select_ranked(L, P, V, false, (u64)K, scale, s);
      kmass = k.mass_above + group_mass(k.key, (u64)(K - k.above));
    }
    int64_t keep = K; // then top-p: the shortest prefix of those whose mass reaches top_p of theirs
    u64 kept = kmass;
    if (pk.top_p < 1) {
      u64 target = (u64)ceil(pk.top_p * (double)kmass);
      target = target ? target : 1;
      const Sel q = select_ranked(L, P, V, true, target, scale, s);
      if (q.found) {
        const u64 f = group_mass(q.key, 1), j = (target - q.mass_above + f - 1) / f;
        if ((int64_t)(q.above + j) < keep) keep = (int64_t)(q.above + j), kept = q.mass_above + j * f;
      }
    }
    // the draw: the first of the kept whose running mass exceeds u times theirs (the last kept
    // when rounding takes it past them)
    const u64 target = (u64)floor(pk.u * (double)kept) + 1;
    Sel d = select_ranked(L, P, V, true, target, scale, s);
    u64 j = 0;
    if (d.found) {
      const u64 f = group_mass(d.key, 1);
      j = (target - d.mass_above + f - 1) / f;
    }
    if (!d.found || (int64_t)(d.above + j) > keep)
      d = select_ranked(L, P, V, false, (u64)keep, scale, s), j = (u64)keep - d.above;
    // the j-th in id order among the keys equal to d's: the one listed, when it is alone
    const unsigned key = d.key;
    int64_t i = -1;
    if (d.equal == 1 && s.list_bin <= (int)(key >> 24)) {
      if (threadIdx.x == 0) s.r64[0] = ~0ull;
      __syncthreads();
      for (int x = threadIdx.x; x < s.nlist; x += ST)
        if (key_of(L[s.list[x]]) == key) s.r64[0] = (u64)s.list[x];
      __syncthreads();
      i = s.r64[0] == ~0ull ? -1 : (int64_t)s.r64[0];
    } else {
      i = find_in_order(V, j, [&](int64_t x) { return (u64)(key_of(L[x]) == key); }, s);
    }
    id = (int32_t)(i >= 0 ? i : best);
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = id;
}

extern "C" lb_status lb_cuda_sample(lb_cuda_ctx *c, const float *logits, float *probs, int64_t rows, int64_t vocab,
                                    const lb_cuda_pick *picks, int32_t *ids, lb_error *err) {
  if (rows < 1 || vocab < 1 || vocab > INT32_MAX || rows > 65535)
    return lb_cu_fail(err, LB_EINVAL, "cuda sample: rows must be 1..65535 and the vocabulary 1..2^31-1");
  return lb_cu_check(err, "launching the sampler",
                     lb_cu_launch(sample_k, dim3((unsigned)rows), dim3(ST), 0, (cudaStream_t)lb_cuda_stream(c), logits,
                                  probs, vocab, picks, ids));
}
