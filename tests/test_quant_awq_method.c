/* AWQ's model-free parts (quant/awq.h) against float64 math written here from AutoAWQ's formulas:
 *  - quantize / fake_quant: pseudo_quantize_tensor with zero point, per group (scale rounded to
 *    the storage dtype first);
 *  - w_mean and the scales of a ratio (duo scaling, normalised by sqrt(max * min));
 *  - search: on a Linear with channels of very different magnitudes, the exponent picked is the one
 *    whose measured output error (computed here in float64) is smallest, and it is not 0;
 *  - clip: every (row, group) is clamped to the candidate max_val with the smallest error of the
 *    group's partial outputs;
 *  - NaN weights refused. */
#include "quant/awq.h"
#include "test.h"

static uint64_t rng = 0x853C49E6748FEA9Bull;
static double drand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1.0p-52 - 1.0;
}

/* AutoAWQ's pseudo_quantize_tensor of one group, float64. */
static void ref_group(const double *w, int64_t n, int bits, double *out, double *scale, double *zero) {
  double maxq = (1 << bits) - 1, lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; i++) lo = fmin(lo, w[i]), hi = fmax(hi, w[i]);
  double s = fmax(hi - lo, 1e-5) / maxq, z = -nearbyint(lo / s);
  z = z < 0 ? 0 : z > maxq ? maxq : z;
  for (int64_t i = 0; i < n; i++) {
    double q = nearbyint(w[i] / s) + z;
    out[i] = ((q < 0 ? 0 : q > maxq ? maxq : q) - z) * s;
  }
  if (scale) *scale = s, *zero = z;
}

static void ref_fake(double *w, int64_t R, int64_t C, int bits, int64_t g) {
  double *tmp = malloc((size_t)g * sizeof(double));
  for (int64_t r = 0; r < R; r++)
    for (int64_t g0 = 0; g0 < C; g0 += g) {
      ref_group(w + r * C + g0, g, bits, tmp, NULL, NULL);
      memcpy(w + r * C + g0, tmp, (size_t)g * sizeof(double));
    }
  free(tmp);
}

static void quantize(void) {
  lb_error err = {0};
  enum { R = 12, C = 96, G = 32 };
  float w[R * C], f[R * C];
  double d[R * C];
  for (int i = 0; i < R * C; i++) w[i] = (float)(drand() * (i % 7 == 0 ? 2.0 : 0.3) + 0.05), d[i] = w[i];
  for (int bits = 2; bits <= 4; bits++) {
    memcpy(f, w, sizeof w);
    lb_awq_fake_quant(f, R, C, bits, G);
    double want[R * C];
    memcpy(want, d, sizeof d);
    ref_fake(want, R, C, bits, G);
    double worst = 0;
    for (int i = 0; i < R * C; i++) worst = fmax(worst, fabs(f[i] - want[i]));
    /* fp32 vs fp64 of the same formula: ~1e-7 of the group range, unless a value sits on a
     * rounding tie (none in these random values) */
    CHECK_MSG(worst < 1e-5, "bits %d: worst %g", bits, worst);
    lb_qweight q;
    CHECK_OK(lb_awq_quantize(w, R, C, bits, G, LB_F16, "m", &q, &err), &err);
    int bad = 0;
    for (int64_t r = 0; r < R; r++)
      for (int64_t g = 0; g < C / G; g++) {
        double s, z, tmp[G];
        ref_group(d + r * C + g * G, G, bits, tmp, &s, &z);
        float sf = q.scale[r * q.ngroups + g];
        bad += sf != lb_f16_to_f32(lb_f32_to_f16((float)s)) || q.zero[r * q.ngroups + g] != z;
        for (int64_t i = 0; i < G; i++) { /* codes against the stored (f16) scale */
          double v = nearbyint(d[r * C + g * G + i] / sf) + z, mq = (1 << bits) - 1;
          bad += q.q[r * C + g * G + i] != (uint8_t)(v < 0 ? 0 : v > mq ? mq : v);
        }
      }
    CHECK_MSG(bad == 0, "bits %d: %d mismatches", bits, bad);
    lb_qweight_free(&q);
  }
  w[17] = NAN;
  lb_qweight q;
  CHECK(lb_awq_quantize(w, R, C, 4, G, LB_F16, "model.layers.2.mlp.up_proj", &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "model.layers.2.mlp.up_proj") != NULL);
}

/* The search problem: y = x W^T, with a few input channels 30x louder than the rest. */
enum { SR = 48, SC = 128, SN = 256, SG = 64, GRID = 20 };
static float sw[SR * SC], sx[SN * SC];

static double out_err(const float *s) {
  /* W' = fake(W * s) / s, error of x W'^T against x W^T, float64 */
  static double wq[SR * SC];
  for (int r = 0; r < SR; r++)
    for (int c = 0; c < SC; c++) wq[r * SC + c] = (double)sw[r * SC + c] * s[c];
  ref_fake(wq, SR, SC, 4, SG);
  for (int r = 0; r < SR; r++)
    for (int c = 0; c < SC; c++) wq[r * SC + c] /= s[c];
  double e = 0;
  for (int t = 0; t < SN; t++)
    for (int r = 0; r < SR; r++) {
      double a = 0, b = 0;
      for (int c = 0; c < SC; c++) a += sx[t * SC + c] * wq[r * SC + c], b += sx[t * SC + c] * sw[r * SC + c];
      e += (a - b) * (a - b);
    }
  return e / (SN * SR);
}

static double loss_cb(void *ctx, const float *s) {
  (void)ctx;
  return out_err(s);
}

static void search(void) {
  for (int i = 0; i < SR * SC; i++) sw[i] = (float)(drand() * 0.1);
  for (int t = 0; t < SN; t++)
    for (int c = 0; c < SC; c++) sx[t * SC + c] = (float)(drand() * (c % 16 == 3 ? 30.0 : 1.0));
  float xm[SC], wm[SC], best[SC], s[SC];
  for (int c = 0; c < SC; c++) {
    double a = 0;
    for (int t = 0; t < SN; t++) a += fabs(sx[t * SC + c]);
    xm[c] = (float)(a / SN);
  }
  const float *ws[1] = {sw};
  int64_t rows[1] = {SR};
  lb_awq_w_mean(ws, rows, 1, SC, SG, wm);
  /* w_mean: float64 from the formula */
  double worst = 0;
  for (int c = 0; c < SC; c++) {
    double acc = 0;
    for (int r = 0; r < SR; r++) {
      int g0 = c / SG * SG;
      double am = 0;
      for (int i = 0; i < SG; i++) am = fmax(am, fabs(sw[r * SC + g0 + i]));
      acc += fabs(sw[r * SC + c]) / (am + 1e-6);
    }
    worst = fmax(worst, fabs(acc / SR - wm[c]));
  }
  /* an fp32 ratio in [0, 1] per weight, averaged in float64 there and here: a few fp32 ulps */
  CHECK_MSG(worst < 1e-6, "w_mean worst %g", worst);
  /* scales of ratio 0.35 */
  lb_awq_scales(xm, wm, SC, 0.35, s);
  double lo = INFINITY, hi = 0, sd[SC];
  for (int c = 0; c < SC; c++) {
    sd[c] = fmax(pow(xm[c], 0.35) / (pow(wm[c], 0.65) + 1e-4), 1e-4);
    lo = fmin(lo, sd[c]), hi = fmax(hi, sd[c]);
  }
  worst = 0;
  for (int c = 0; c < SC; c++) worst = fmax(worst, fabs(sd[c] / sqrt(lo * hi) - s[c]) / s[c]);
  /* powf and the fp32 normalisation against pow in float64: a few fp32 ulps of relative error */
  CHECK_MSG(worst < 1e-5, "scales worst relative %g", worst);
  /* the search: its losses are the callback's, and it picks their smallest */
  double losses[GRID];
  int b = lb_awq_search(xm, wm, SC, GRID, loss_cb, NULL, best, losses);
  int argmin = 0;
  for (int i = 0; i < GRID; i++) {
    lb_awq_scales(xm, wm, SC, (double)i / GRID, s);
    double l = out_err(s);
    /* the same float64 callback on the same fp32 scales: equal up to summation order (none) */
    CHECK(fabs(l - losses[i]) <= 1e-12 * fabs(l));
    if (l < losses[argmin]) argmin = i;
  }
  printf("  loss at ratio 0: %.4g, best ratio %.2f: %.4g\n", losses[0], (double)b / GRID, losses[b]);
  CHECK(b == argmin);
  CHECK(b > 0 && losses[b] < 0.9 * losses[0]); /* loud channels: scaling must pay off */
  lb_awq_scales(xm, wm, SC, (double)b / GRID, s);
  CHECK(!memcmp(s, best, sizeof s));
}

static void clip(void) {
  lb_error err = {0};
  enum { R = 16, C = 128, N = 64, G = 32 };
  static float w[R * C], w0[R * C], x[N * C];
  for (int i = 0; i < R * C; i++) w[i] = w0[i] = (float)(drand() * 0.05 * (i % 29 == 0 ? 6 : 1));
  for (int i = 0; i < N * C; i++) x[i] = (float)drand();
  CHECK_OK(lb_awq_clip(w, R, C, 4, G, x, N, "m", &err), &err);
  int bad = 0, clipped = 0;
  for (int r = 0; r < R; r++)
    for (int g0 = 0; g0 < C; g0 += G) {
      double am = 0, best = 0, min_e = 1e9;
      for (int i = 0; i < G; i++) am = fmax(am, fabs(w0[r * C + g0 + i]));
      for (int k = 0; k < 10; k++) {
        double mv = (float)am * (1.0f - (float)k / 20.0f), cur[G], q[G];
        for (int i = 0; i < G; i++) cur[i] = fmin(fmax(w0[r * C + g0 + i], -mv), mv);
        ref_group(cur, G, 4, q, NULL, NULL);
        double e = 0;
        for (int t = 0; t < N; t++) {
          double a = 0, o = 0;
          for (int i = 0; i < G; i++) a += x[t * C + g0 + i] * q[i], o += x[t * C + g0 + i] * w0[r * C + g0 + i];
          e += (a - o) * (a - o);
        }
        e /= N;
        if (e < min_e) min_e = e, best = mv;
      }
      clipped += best < am;
      for (int i = 0; i < G; i++) {
        double want = fmin(fmax(w0[r * C + g0 + i], -best), best);
        /* a clamp picks an fp32 value (the weight or the fp32 max_val): exact unless the float64
         * search picked another candidate, which moves it by >= 5% of the group's max */
        bad += fabs(w[r * C + g0 + i] - want) > 1e-7;
      }
    }
  printf("  clip: %d of %d groups shrunk\n", clipped, R * C / G);
  CHECK_MSG(bad == 0, "%d weights differ from the float64 clip", bad);
  CHECK(clipped > 0); /* the outliers make shrinking pay for some groups */
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"quantize", quantize}, {"search", search}, {"clip", clip}};
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
