// Part of gemv_lab.cu (included after make_weights, gemv_ref and run_base, which it uses):
// `lab ITERS chain`, the persistent chain of gemv_chain.cuh checked and timed against the library's
// register GEMV.
#ifndef LB_BENCH_CUDA_GEMV_CHAIN_LAB_CUH
#define LB_BENCH_CUDA_GEMV_CHAIN_LAB_CUH

// ---- the chain (gemv_chain.cuh): L products of one shape in one persistent kernel, product k's
// input product k - 1's fp16 output (repeated to the columns), weights cycled through copies past
// twice the L2; each product checked against gemv_ref on its own input, then timed a product ----
struct ChainVariant {
  const char *name;
  int m, ring_kb, inflight_kb;
  unsigned backoff; // ns between polls of the input
  int g;            // pairs a chunk
};
// m: the math warps, plus 100 x the kernel's MODE bits (gemv_chain.cuh: 1 loads only, 2 barriers
// polled with test_wait, 4 outputs stored by one bulk copy)

// (the outputs' tags cleared first: every launch runs the same tags)
static cudaError_t chain_run(const ChainVariant &v, const ChainOp *ops, int L, int cols, int max_sc, uint32_t *outs,
                             size_t out_bytes, cudaStream_t st, unsigned long long *stamps = NULL) {
  const uint32_t ring = v.ring_kb * 1024u, fly = v.inflight_kb * 1024u;
  cudaError_t e = cudaMemsetAsync(outs, 0, out_bytes, st);
  if (e != cudaSuccess) return e;
  switch (v.m) {
  case 8: return chain_launch<8>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 108: return chain_launch<8, 1>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 208: return chain_launch<8, 2>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 408: return chain_launch<8, 4>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 508: return chain_launch<8, 5>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 416: return chain_launch<16, 4>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  case 16: return chain_launch<16>(ops, L, cols, max_sc, ring, fly, st, stamps, v.backoff, v.g ? v.g : 1);
  default: return cudaErrorInvalidValue;
  }
}

static void time_chain(int iters, double copy, int l2) {
  std::vector<std::string> chain_lines, chain_skew;
  const ChainVariant vs[] = {{"m8 r200 f200", 8, 200, 200, 0, 1},       {"g2 m8 r200 f200", 8, 200, 200, 0, 2},
                             {"g2 m16 r200 f200", 16, 200, 200, 0, 2}, {"g2 m16 r200 f64", 16, 200, 64, 0, 2},
                             {"g4 m16 r200 f200", 16, 200, 200, 0, 4}, {"~cut g2 m8 r200 f200", 108, 200, 200, 0, 2},
                             {"poll m8 r200 f200", 208, 200, 200, 0, 1}, {"ybulk m8 r200 f200", 408, 200, 200, 0, 1},
                             {"b200 m8 r200 f200", 8, 200, 200, 200, 1}};
  const int nv = sizeof vs / sizeof vs[0], L = 48;
  const int shapes[][3] = {{4096, 4096, 0}, {4096, 11008, 0}, {11008, 4096, 0}, {4096, 4096, 1}}; // 1: hot
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  printf("Chains of %d products in one kernel (us a product, share of copy); base: the library's register GEMV, "
         "a launch a product (same x)\n\n| weight | base |",
         L);
  for (int v = 0; v < nv; v++) printf(" %s |", vs[v].name);
  printf("\n| --- | ---: |");
  for (int v = 0; v < nv; v++) printf(" ---: |");
  printf("\n");
  for (const auto &sh : shapes) {
    const int rows = sh[0], cols = sh[1], group = 128, ng = cols / group, hot = sh[2];
    const size_t cb = (size_t)rows * cols / 2, sb = (size_t)rows * ng * 4, bytes = cb + sb + (size_t)cols * 2;
    int copies = (int)(2 * (size_t)l2 / (cb + sb)) + 2;
    if (copies > L) copies = L;
    if (hot) copies = 1; // one weight, read from the L2 after the first product
    const double s0 = 1.0 / (sqrt((double)cols) * 6.5 * 1.04); // about unit gain a product
    std::vector<Weight> ws = make_weights(rows, cols, group, copies, 0.5 * s0, s0); // scales in [s0 / 2, 3 s0 / 2)
    const int vlen = rows > cols ? rows : cols;
    uint32_t *xb; // L + 1 tagged vectors: the input, then the products'
    float *yfb, *dr, *dm, *dyb;
    __half *xfull, *x16;
    CK(cudaMalloc((void **)&xb, (size_t)(L + 1) * vlen * 4));
    CK(cudaMalloc((void **)&x16, cols * 2));
    CK(cudaMalloc((void **)&yfb, (size_t)L * rows * 4));
    CK(cudaMalloc((void **)&dr, rows * 4));
    CK(cudaMalloc((void **)&dm, rows * 4));
    CK(cudaMalloc((void **)&dyb, rows * 4));
    CK(cudaMalloc((void **)&xfull, cols * 2));
    std::vector<__half> hx(cols);
    std::vector<uint32_t> hw(cols);
    for (int c = 0; c < cols; c++)
      hx[c] = __float2half((float)((int)(next32() % 2001) - 1000) / 1000.0f), hw[c] = __half_as_ushort(hx[c]); // tag 0
    CK(cudaMemcpy(xb, hw.data(), cols * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(x16, hx.data(), cols * 2, cudaMemcpyHostToDevice));
    std::vector<ChainOp> hop(L);
    for (int k = 0; k < L; k++) {
      const Weight &w = ws[k % copies];
      hop[k] = {(const uint8_t *)w.qw.codes, (const uint32_t *)w.qw.scales, xb + (size_t)k * vlen,
                xb + (size_t)(k + 1) * vlen, yfb + (size_t)k * rows, rows, cols, ng, group / 32, (k ? rows : cols) / 4,
                (uint32_t)k, (uint32_t)k + 1};
    }
    ChainOp *dops, *dops_t;
    CK(cudaMalloc((void **)&dops, L * sizeof(ChainOp)));
    CK(cudaMalloc((void **)&dops_t, L * sizeof(ChainOp)));
    CK(cudaMemcpy(dops, hop.data(), L * sizeof(ChainOp), cudaMemcpyHostToDevice));
    for (auto &o : hop) o.yf = NULL;
    CK(cudaMemcpy(dops_t, hop.data(), L * sizeof(ChainOp), cudaMemcpyHostToDevice));
    const int per = 4 * ((rows / 8 + g_sms - 1) / g_sms), max_sc = per * 2 * ng * 4; // pairs a block, at most
    printf("| %d x %d%s |", rows, cols, hot ? " hot" : "");
    {
      const double us = time_graph(st, 2 * copies, iters, [&](int i) { run_base(ws[i % copies], x16, dyb, st); });
      printf(" %.2f (%.0f%%) |", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy);
    }
    std::vector<float> ref(rows), mag(rows), got(rows);
    std::vector<uint32_t> gx(vlen), gy(rows);
    uint32_t *outs = xb + vlen;
    const size_t out_bytes = (size_t)L * vlen * 4;
    for (int v = 0; v < nv; v++) {
      CK(cudaMemset(yfb, 0xFF, (size_t)L * rows * 4));
      if (chain_run(vs[v], dops, L, cols, max_sc, outs, out_bytes, st) != cudaSuccess) { // no room for the ring
        cudaGetLastError();
        printf(" n/a |");
        continue;
      }
      CK(cudaStreamSynchronize(st));
      // bound as the lab's GEMV (a step's fp16 sums: 2^-6 of sum |w x|); y: yf rounded to fp16
      double worst = 0;
      bool yok = true;
      for (int k = 0; k < L; k += (k < 4 ? 1 : 7)) {
        const Weight &w = ws[k % copies];
        CK(cudaMemcpy(gx.data(), xb + (size_t)k * vlen, vlen * 4, cudaMemcpyDeviceToHost));
        std::vector<__half> xf(cols);
        const int xn = (k ? rows : cols);
        for (int c = 0; c < cols; c++) xf[c] = __ushort_as_half((unsigned short)(gx[c % xn] & 0xFFFF));
        CK(cudaMemcpy(xfull, xf.data(), cols * 2, cudaMemcpyHostToDevice));
        gemv_ref<<<(rows + 127) / 128, 128>>>((const uint8_t *)w.qw.codes, (const uint32_t *)w.qw.scales, rows, cols,
                                              group, ng, xfull, dr, dm);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(ref.data(), dr, rows * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(mag.data(), dm, rows * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(got.data(), yfb + (size_t)k * rows, rows * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(gy.data(), xb + (size_t)(k + 1) * vlen, rows * 4, cudaMemcpyDeviceToHost));
        for (int r = 0; r < rows; r++) {
          const double d = fabs((double)got[r] - ref[r]) / (mag[r] / 64.0 + 1e-30);
          if (!(d <= worst)) worst = d != d ? INFINITY : d;
          if (gy[r] != ((uint32_t)(k + 1) << 16 | __half_as_ushort(__float2half(got[r])))) yok = false;
        }
      }
      if ((!(worst <= 1.0) || !yok) && vs[v].name[0] != '~') {
        printf(" FAIL %.3g%s |", worst, yok ? "" : " y");
        continue;
      }
      const double us = time_graph(st, 2, iters, [&](int) { CK(chain_run(vs[v], dops_t, L, cols, max_sc, outs, out_bytes, st)); }) / L;
      printf(" %.2f (%.0f%%) |", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy);
      fflush(stdout);
      { // where a product's time goes (products 8 .. L - 8): us
        unsigned long long *ds;
        const size_t n = (size_t)L * g_sms * 6;
        CK(cudaMalloc((void **)&ds, n * 8));
        CK(chain_run(vs[v], dops_t, L, cols, max_sc, outs, out_bytes, st, ds));
        CK(cudaStreamSynchronize(st));
        std::vector<unsigned long long> h(n);
        CK(cudaMemcpy(h.data(), ds, n * 8, cudaMemcpyDeviceToHost));
        CK(cudaFree(ds));
        // a block's stamps of product kk: input in, rows done, longest slot wait, pairs done (after the
        // input), the loader's request of the scales, of the last pair
        auto at = [&](int kk, int b, int f) { return (double)h[((size_t)kk * g_sms + b) * 6 + f]; };
        double per = 0, wait = 0, waitmax = 0, comp = 0, compmax = 0, fw = 0, pdn = 0, pdm = 0, lead0 = 0, lead1 = 0;
        int cnt = 0;
        for (int k = 8; k < L - 8; k++, cnt++) {
          double end0 = 0, end1 = 0, wk = 0, wm = 0, ck = 0, cm = 0, fk = 0, sk = 0, sm = 0, l0 = 0, l1 = 0;
          for (int b = 0; b < g_sms; b++) end0 = fmax(end0, at(k - 1, b, 1)), end1 = fmax(end1, at(k, b, 1));
          for (int b = 0; b < g_sms; b++) {
            const double w = at(k, b, 0) - end0, c = at(k, b, 1) - at(k, b, 0);
            wk += w, wm = fmax(wm, w), ck += c, cm = fmax(cm, c), fk += at(k, b, 2);
            sk += at(k, b, 3), sm = fmax(sm, at(k, b, 3)), l0 += at(k, b, 0) - at(k, b, 4), l1 += at(k, b, 0) - at(k, b, 5);
          }
          pdn += sk / g_sms, pdm += sm, lead0 += l0 / g_sms, lead1 += l1 / g_sms;
          per += end1 - end0, wait += wk / g_sms, waitmax += wm, comp += ck / g_sms, compmax += cm, fw += fk / g_sms;
        }
        { // is the slowest block the same SM every product? blocks' mean rows time, and who was last how often
          std::vector<double> mean(g_sms, 0.0);
          std::vector<int> last(g_sms, 0);
          for (int k = 8; k < L - 8; k++) {
            int arg = 0;
            for (int b = 0; b < g_sms; b++) {
              mean[b] += (at(k, b, 1) - at(k, b, 0)) / cnt;
              if (at(k, b, 1) > at(k, arg, 1)) arg = b;
            }
            last[arg]++;
          }
          std::vector<int> ord(g_sms);
          for (int b = 0; b < g_sms; b++) ord[b] = b;
          std::sort(ord.begin(), ord.end(), [&](int a, int b) { return mean[a] > mean[b]; });
          char sk[512];
          int n = snprintf(sk, sizeof sk, "%d x %d %s: slowest blocks (mean rows us / times last of %d):", rows, cols, vs[v].name, cnt);
          for (int j = 0; j < 6; j++) n += snprintf(sk + n, sizeof sk - n, " b%d %.2f/%d", ord[j], mean[ord[j]] / 1e3, last[ord[j]]);
          snprintf(sk + n, sizeof sk - n, "; median %.2f", mean[ord[g_sms / 2]] / 1e3);
          chain_skew.push_back(sk);
        }
        char line[256];
        snprintf(line, sizeof line, "| %d x %d%s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |",
                 rows, cols, hot ? " hot" : "", vs[v].name, per / cnt / 1e3, wait / cnt / 1e3, waitmax / cnt / 1e3,
                 comp / cnt / 1e3, compmax / cnt / 1e3, fw / cnt / 1e3, pdn / cnt / 1e3, pdm / cnt / 1e3, lead0 / cnt / 1e3,
                 lead1 / cnt / 1e3);
        chain_lines.push_back(line);
      }
    }
    printf("\n");
    for (auto &w : ws) {
      CK(cudaFree(w.qw.codes));
      CK(cudaFree(w.qw.scales));
    }
    for (void *p : {(void *)xb, (void *)x16, (void *)yfb, (void *)dr, (void *)dm, (void *)dyb, (void *)xfull, (void *)dops, (void *)dops_t})
      CK(cudaFree(p));
  }
  CK(cudaStreamDestroy(st));
  printf("\nWhere a product goes (us, means over products 8..%d): the period between the last blocks' ends; a block's "
         "input in after the last end before (mean, max); its rows done after (mean, max); warp 0's waits for "
         "slots (the longest of any warp, block mean); the last warp's end of its pairs after the input (mean, max); how long before the input was in "
         "the loader asked for the product's scales, and for its last pair\n\n| weight | variant | period | input mean | input max | rows mean | rows max | slot waits | "
         "pairs done mean | pairs done max | lead first | lead last |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n", L - 9);
  for (auto &l : chain_lines) printf("%s\n", l.c_str());
  printf("\n");
  for (auto &l : chain_skew) printf("%s\n", l.c_str());
}

#endif
