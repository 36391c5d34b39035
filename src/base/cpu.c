/* CPU features for run-time kernel dispatch: cpuid, masked by what the OS saves (xgetbv). */
#include <string.h>
#include <unistd.h>

#include "lowbit.h"

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((unsigned long long)edx << 32) | eax;
}

void lb_cpu_detect(lb_cpu_info *o) {
  memset(o, 0, sizeof *o);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  o->logical_cores = n > 0 ? (int)n : 1;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  bool osxsave = c >> 27 & 1;
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  bool ymm = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
  bool zmm = (xcr0 & 0xE6) == 0xE6;  /* plus opmask and the upper ZMM state */
  bool tiles = (xcr0 & 0x60000) == 0x60000; /* XTILECFG and XTILEDATA */
  o->fma = ymm && (c >> 12 & 1);
  o->f16c = ymm && (c >> 29 & 1);
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    o->avx2 = ymm && (b >> 5 & 1);
    o->avx512f = zmm && (b >> 16 & 1);
    o->avx512bw = zmm && (b >> 30 & 1);
    o->avx512vl = zmm && (b >> 31 & 1);
    o->avx512_vnni = zmm && (c >> 11 & 1);
    o->avx512_fp16 = zmm && (d >> 23 & 1);
    /* Linux grants tile state per process on request (arch_prctl); XCR0 shows the OS supports it */
    o->amx_bf16 = tiles && (d >> 22 & 1);
    o->amx_tile = tiles && (d >> 24 & 1);
    o->amx_int8 = tiles && (d >> 25 & 1);
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) o->avx512_bf16 = zmm && (a1 >> 5 & 1);
  }
  unsigned brand[12];
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; i++)
      __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2],
                  &brand[4 * i + 3]);
    memcpy(o->brand, brand, 48);
    o->brand[48] = 0;
    char *p = o->brand; /* trim leading spaces */
    while (*p == ' ') p++;
    memmove(o->brand, p, strlen(p) + 1);
  }
}
#else
void lb_cpu_detect(lb_cpu_info *o) {
  memset(o, 0, sizeof *o);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  o->logical_cores = n > 0 ? (int)n : 1;
}
#endif
