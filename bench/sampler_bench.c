/* The sampler's cost a token (lb_sampler_next), for the settings generation_config.json files
 * commonly give, on a vocabulary of Llama-2/Mistral's size and of Llama-3's.
 *   build/lb_sampler_bench [VOCAB...]   (default 32000 128256; us a token: the best of 5 rounds
 *                                       of 60 calls)
 * Logits: a normal spread (sd 2.5) with three tokens well above it, as a trained model's next-token
 * logits look, then nearly flat logits (the worst case for top-p); the same seed every run, so the
 * printed checksum of the chosen ids is comparable across builds (the same choices). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lowbit.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  static const long dflt[] = {32000, 128256};
  const int nv = argc > 1 ? argc - 1 : 2;
  static const struct {
    const char *name;
    lb_sampler_params p;
  } set[] = {
      {"T 0.6, top-p 0.9", {.temperature = 0.6, .top_p = 0.9, .seed = 1}},
      {"T 1, top-k 50", {.temperature = 1, .top_k = 50, .top_p = 1, .seed = 1}},
      {"T 0.7, top-k 40, top-p 0.95", {.temperature = 0.7, .top_k = 40, .top_p = 0.95, .seed = 1}},
      {"T 1 (no cut)", {.temperature = 1, .top_p = 1, .seed = 1}},
  };
  printf("| settings | vocabulary | us a token | checksum of ids |\n| --- | ---: | ---: | ---: |\n");
  for (int v = 0; v < nv; v++) {
    const long n = argc > 1 ? strtol(argv[v + 1], NULL, 10) : dflt[v];
    if (n < 4) {
      fprintf(stderr, "lb_sampler_bench: vocabulary %s: must be at least 4\n", argc > 1 ? argv[v + 1] : "?");
      return 2;
    }
    float *lg = malloc((size_t)n * sizeof *lg);
    if (!lg) return 2;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < n; i++) { /* Box-Muller from a xorshift */
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const double u = ((double)(x >> 11) + 1) * 0x1.0p-53;
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const double w = (double)(x >> 11) * 0x1.0p-53;
      lg[i] = (float)(2.5 * sqrt(-2 * log(u)) * cos(6.283185307179586 * w));
    }
    lg[17] = 14, lg[99] = 13, lg[n / 2] = 12.5f;
    for (size_t j = 0; j <= sizeof set / sizeof set[0]; j++) {
      /* last, the worst case: nearly flat logits, where top-p keeps most of the vocabulary */
      const bool flat = j == sizeof set / sizeof set[0];
      if (flat)
        for (long i = 0; i < n; i++) lg[i] = (float)((i * 2654435761u) % 1000u) / 1000.0f;
      const lb_sampler_params p = flat ? set[0].p : set[j].p;
      const char *name = flat ? "T 0.6, top-p 0.9, flat logits" : set[j].name;
      lb_sampler *s;
      lb_error err;
      if (lb_sampler_new(&p, n, &s, &err) != LB_OK) {
        fprintf(stderr, "lb_sampler_bench: %s\n", err.msg);
        return 1;
      }
      const int rounds = 5, iters = 60; /* the best round's time: the machine is shared and noisy */
      long sum = 0;
      double best = INFINITY;
      for (int r = 0; r < rounds; r++) {
        const double t0 = now();
        for (int i = 0; i < iters; i++) sum += lb_sampler_next(s, lg);
        best = fmin(best, (now() - t0) / iters);
      }
      printf("| %s | %ld | %.1f | %ld |\n", name, n, best * 1e6, sum);
      lb_sampler_free(s);
    }
    free(lg);
  }
  return 0;
}
