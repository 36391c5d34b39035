// The SMs' copy engine (sm_90 TMA 1D bulk copies) and the shared-memory barriers that count its
// bytes in: used by the staged GEMV (gemv.cu) and the lab's kernels (bench/cuda). LB_TMA is 1 in
// device code for sm_90 and later, where these exist; elsewhere the helpers are not defined.
#ifndef LB_BACKEND_CUDA_TMA_CUH
#define LB_BACKEND_CUDA_TMA_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define LB_TMA 1
// a barrier that one arrival (mbar_expect's) and the bytes it expects complete
__device__ __forceinline__ void mbar_init(uint64_t *b) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n"
               "fence.mbarrier_init.release.cluster;\n"
               "fence.proxy.async.shared::cta;" ::"r"(smem_addr(b))
               : "memory");
}
// the phase's bytes to come, then its copies (dst, src and bytes multiples of 16)
__device__ __forceinline__ void mbar_expect(uint64_t *b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(b))
               : "memory");
}
// until the phase of that parity completes (POLL: test_wait, which never suspends the thread,
// instead of try_wait, which may)
template <bool POLL = false>
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
  if (POLL)
    asm volatile("{\n.reg .pred p;\nWAIT:\n"
                 "mbarrier.test_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT;\n}" ::"r"(smem_addr(b)),
                 "r"(parity)
                 : "memory");
  else
    asm volatile("{\n.reg .pred p;\nWAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT;\n}" ::"r"(smem_addr(b)),
                 "r"(parity)
                 : "memory");
}
// earlier reads of shared memory (generic proxy) ordered before the copy engine's next writes
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
#else
#define LB_TMA 0
#endif

#endif
