/* The CUDA entry points of a build without the CUDA backend: each fails with LB_EUNSUPPORTED (or
 * does nothing), so that callers compile and report the missing backend by name. */
#include "backend/cuda/cuda.h"
#include "base/status.h"
#include "lowbit.h"

#define NO_CUDA(err) lb_fail(err, LB_EUNSUPPORTED, "this build has no CUDA backend (build with nvcc present, or -DLOWBIT_CUDA=ON)")

bool lb_cuda_built(void) { return false; }

lb_status lb_cuda_devices(lb_gpu_info *out, int cap, int *count, lb_error *err) {
  (void)out, (void)cap, (void)err;
  *count = 0;
  return LB_OK;
}

lb_status lb_cuda_open(lb_cuda_ctx **out, lb_error *err) {
  *out = NULL;
  return NO_CUDA(err);
}
void lb_cuda_close(lb_cuda_ctx *c) { (void)c; }
void *lb_cuda_stream(lb_cuda_ctx *c) { return (void)c, NULL; }
lb_status lb_cuda_alloc(lb_cuda_ctx *c, size_t bytes, void **p, lb_error *err) {
  (void)c, (void)bytes;
  *p = NULL;
  return NO_CUDA(err);
}
void lb_cuda_release(void *p) { (void)p; }
uint64_t lb_cuda_allocated(const lb_cuda_ctx *c) { return (void)c, 0; }
lb_status lb_cuda_host_alloc(size_t bytes, void **p, lb_error *err) {
  (void)bytes;
  *p = NULL;
  return NO_CUDA(err);
}
void lb_cuda_host_release(void *p) { (void)p; }
lb_status lb_cuda_put(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err) {
  (void)c, (void)dst, (void)src, (void)bytes;
  return NO_CUDA(err);
}
lb_status lb_cuda_get(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err) {
  (void)c, (void)dst, (void)src, (void)bytes;
  return NO_CUDA(err);
}
lb_status lb_cuda_sync(lb_cuda_ctx *c, lb_error *err) { return (void)c, NO_CUDA(err); }
lb_status lb_cuda_gemm(lb_cuda_ctx *c, const void *w16, const void *x16, float *y, int64_t rows,
                       int64_t cols, int64_t n, bool acc, lb_error *err) {
  (void)c, (void)w16, (void)x16, (void)y, (void)rows, (void)cols, (void)n, (void)acc;
  return NO_CUDA(err);
}
lb_status lb_cuda_gemm_batched(lb_cuda_ctx *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                               float alpha, const void *A, int64_t lda, int64_t sa, const void *B,
                               int64_t ldb, int64_t sb, void *C, bool c16, int64_t ldc, int64_t sc,
                               int64_t batch, lb_error *err) {
  (void)c, (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda, (void)sa;
  (void)B, (void)ldb, (void)sb, (void)C, (void)c16, (void)ldc, (void)sc, (void)batch;
  return NO_CUDA(err);
}
lb_status lb_cuda_capture_begin(lb_cuda_ctx *c, lb_error *err) { return (void)c, NO_CUDA(err); }
lb_status lb_cuda_capture_end(lb_cuda_ctx *c, void **graph, lb_error *err) {
  (void)c;
  *graph = NULL;
  return NO_CUDA(err);
}
lb_status lb_cuda_graph_launch(lb_cuda_ctx *c, void *graph, lb_error *err) {
  (void)c, (void)graph;
  return NO_CUDA(err);
}
void lb_cuda_graph_free(void *graph) { (void)graph; }

bool lb_cuda_pdl(void) { return false; }
void lb_cuda_set_pdl(bool on) { (void)on; }
bool lb_cuda_qw_fits(const struct lb_qweight *w, const char **why) {
  (void)w;
  if (why) *why = "this build has no CUDA backend";
  return false;
}
lb_status lb_cuda_qw_upload(lb_cuda_ctx *c, const struct lb_qweight *const *w, int n, bool pairs,
                            lb_cuda_qw *out, lb_error *err) {
  (void)c, (void)w, (void)n, (void)pairs;
  *out = (lb_cuda_qw){0};
  return NO_CUDA(err);
}
void lb_cuda_qw_free(lb_cuda_qw *w) { (void)w; }
lb_status lb_cuda_qw_dequant(lb_cuda_ctx *c, const lb_cuda_qw *w, void *out16, lb_error *err) {
  (void)c, (void)w, (void)out16;
  return NO_CUDA(err);
}
lb_status lb_cuda_i8x_alloc(lb_cuda_ctx *c, int64_t cols, lb_cuda_i8x *out, lb_error *err) {
  (void)c, (void)cols;
  *out = (lb_cuda_i8x){0};
  return NO_CUDA(err);
}
void lb_cuda_i8x_free(lb_cuda_i8x *x) { (void)x; }
lb_status lb_cuda_gemv(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y,
                       int batch, bool acc, void *stream, lb_error *err) {
  (void)w, (void)x_f16, (void)i8x, (void)y, (void)batch, (void)acc, (void)stream;
  return NO_CUDA(err);
}
lb_status lb_cuda_gemv_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x,
                            const float *bias, void *out16, int batch, void *stream, lb_error *err) {
  (void)w, (void)x_f16, (void)i8x, (void)bias, (void)out16, (void)batch, (void)stream;
  return NO_CUDA(err);
}
lb_status lb_cuda_qmma(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y, int64_t n,
                       bool acc, void *stream, lb_error *err) {
  (void)w, (void)x_f16, (void)i8x, (void)y, (void)n, (void)acc, (void)stream;
  return NO_CUDA(err);
}
lb_status lb_cuda_qmma_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x,
                            const float *bias, void *out16, int64_t n, void *stream, lb_error *err) {
  (void)w, (void)x_f16, (void)i8x, (void)bias, (void)out16, (void)n, (void)stream;
  return NO_CUDA(err);
}
void lb_cuda_set_mma_depth(int depth) { (void)depth; }

lb_status lb_cuda_to_f16(lb_cuda_ctx *c, const void *src, lb_dtype dt, int64_t n, void *dst16,
                         int *bad, lb_error *err) {
  (void)c, (void)src, (void)dt, (void)n, (void)dst16, (void)bad;
  return NO_CUDA(err);
}
lb_status lb_cuda_embed(lb_cuda_ctx *c, const void *table16, const int32_t *ids, int64_t n,
                        int64_t d, float *x, lb_error *err) {
  (void)c, (void)table16, (void)ids, (void)n, (void)d, (void)x;
  return NO_CUDA(err);
}
lb_status lb_cuda_rmsnorm(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                          int64_t n, int64_t d, const int32_t *perm, void *y16, lb_error *err) {
  (void)c, (void)x, (void)ldx, (void)w, (void)eps, (void)n, (void)d, (void)perm, (void)y16;
  return NO_CUDA(err);
}
lb_status lb_cuda_rope_kv(lb_cuda_ctx *c, float *qkv, const float *bias, int64_t n, int64_t per,
                          const lb_cuda_attn *a, const float *cs, const int32_t *pos, void *kc16,
                          void *vc16, void *q16, lb_error *err) {
  (void)c, (void)qkv, (void)bias, (void)n, (void)per, (void)a, (void)cs, (void)pos, (void)kc16, (void)vc16, (void)q16;
  return NO_CUDA(err);
}
lb_status lb_cuda_attention_check(const lb_cuda_attn *a, lb_error *err) { return (void)a, NO_CUDA(err); }
size_t lb_cuda_attention_scratch(const lb_cuda_attn *a) { return (void)a, 0; }
lb_status lb_cuda_attention(lb_cuda_ctx *c, const float *qkv, const void *kc16, const void *vc16,
                            int64_t n, int64_t per, const int32_t *pos, const lb_cuda_attn *a,
                            void *out16, lb_error *err) {
  (void)c, (void)qkv, (void)kc16, (void)vc16, (void)n, (void)per, (void)pos, (void)a, (void)out16;
  return NO_CUDA(err);
}
lb_status lb_cuda_softmax_rows(lb_cuda_ctx *c, const float *S, void *P16, int64_t heads, int64_t n,
                               int64_t nk, int64_t ld, int64_t pos, int64_t window, lb_error *err) {
  (void)c, (void)S, (void)P16, (void)heads, (void)n, (void)nk, (void)ld, (void)pos, (void)window;
  return NO_CUDA(err);
}
lb_status lb_cuda_gather_cols(lb_cuda_ctx *c, const void *x16, const int32_t *perm, int64_t n, int64_t cols,
                              void *out16, lb_error *err) {
  (void)c, (void)x16, (void)perm, (void)n, (void)cols, (void)out16;
  return NO_CUDA(err);
}
lb_status lb_cuda_attention_gemm(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16, int64_t n,
                                 int64_t pos, const lb_cuda_attn *a, float *S, void *P16, void *out16, lb_error *err) {
  (void)c, (void)q16, (void)kc16, (void)vc16, (void)n, (void)pos, (void)a, (void)S, (void)P16, (void)out16;
  return NO_CUDA(err);
}
bool lb_cuda_flash_fits(const lb_cuda_attn *a) { return (void)a, false; }
lb_status lb_cuda_flash_attention(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16,
                                  int64_t seq_stride, int64_t nseq, int64_t per, int64_t pos,
                                  const lb_cuda_attn *a, void *out16, lb_error *err) {
  (void)c, (void)q16, (void)kc16, (void)vc16, (void)seq_stride, (void)nseq, (void)per, (void)pos, (void)a, (void)out16;
  return NO_CUDA(err);
}
lb_status lb_cuda_silu_mul(lb_cuda_ctx *c, const float *gu, const float *bias, int64_t n,
                           int64_t inter, bool interleaved, void *out16, lb_error *err) {
  (void)c, (void)gu, (void)bias, (void)n, (void)inter, (void)interleaved, (void)out16;
  return NO_CUDA(err);
}
lb_status lb_cuda_add_bias(lb_cuda_ctx *c, float *y, const float *b, int64_t n, int64_t rows,
                           lb_error *err) {
  (void)c, (void)y, (void)b, (void)n, (void)rows;
  return NO_CUDA(err);
}
lb_status lb_cuda_sample(lb_cuda_ctx *c, const float *logits, float *probs, int64_t rows, int64_t vocab,
                         const lb_cuda_pick *picks, int32_t *ids, lb_error *err) {
  (void)c, (void)logits, (void)probs, (void)rows, (void)vocab, (void)picks, (void)ids;
  return NO_CUDA(err);
}
lb_status lb_cuda_fp8_act(lb_cuda_ctx *c, void *x16, int64_t n, int64_t cols, int64_t group,
                          float fixed, void *codes, float *scales, lb_error *err) {
  (void)c, (void)x16, (void)n, (void)cols, (void)group, (void)fixed, (void)codes, (void)scales;
  return NO_CUDA(err);
}
lb_status lb_cuda_rmsnorm_fp8(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                              int64_t n, int64_t d, int64_t group, float fixed, void *y16, lb_error *err) {
  (void)c, (void)x, (void)ldx, (void)w, (void)eps, (void)n, (void)d, (void)group, (void)fixed, (void)y16;
  return NO_CUDA(err);
}
bool lb_cuda_fp8_tc_fits(const lb_cuda_qw *w) { return (void)w, false; }
lb_status lb_cuda_gemm_fp8(lb_cuda_ctx *c, const lb_cuda_qw *w, const void *codes, const float *xscales,
                           float *wscales, float *y, int64_t n, bool acc, lb_error *err) {
  (void)c, (void)w, (void)codes, (void)xscales, (void)wscales, (void)y, (void)n, (void)acc;
  return NO_CUDA(err);
}
lb_status lb_cuda_lt_fp8(lb_cuda_ctx *c, const void *w8, const float *wscale, const void *x8,
                         const float *xscale, float *y, int64_t rows, int64_t cols, int64_t n, bool acc,
                         lb_error *err) {
  (void)c, (void)w8, (void)wscale, (void)x8, (void)xscale, (void)y, (void)rows, (void)cols, (void)n, (void)acc;
  return NO_CUDA(err);
}
