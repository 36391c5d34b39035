/* lowbit devices [--json]: the CPU's features and the CUDA GPUs this build can use. */
#include <jansson.h>
#include <string.h>

#include "cli.h"

static const char *HELP = "usage: lowbit devices [--json]\n"
                          "  The CPU's vector and matrix features (what kernels dispatch on) and the\n"
                          "  CUDA devices, when the build has the CUDA backend.\n";

int cmd_devices(int argc, char **argv) {
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else return cli_usage_error("devices", "unknown argument '%s'", argv[i]);
  }
  lb_cpu_info cpu;
  lb_cpu_detect(&cpu);
  const struct {
    const char *name;
    bool on;
  } F[] = {{"avx2", cpu.avx2},           {"fma", cpu.fma},
           {"f16c", cpu.f16c},           {"avx512f", cpu.avx512f},
           {"avx512bw", cpu.avx512bw},   {"avx512vl", cpu.avx512vl},
           {"avx512_vnni", cpu.avx512_vnni}, {"avx512_bf16", cpu.avx512_bf16},
           {"avx512_fp16", cpu.avx512_fp16}, {"amx_tile", cpu.amx_tile},
           {"amx_int8", cpu.amx_int8},   {"amx_bf16", cpu.amx_bf16}};
  enum { NF = sizeof F / sizeof F[0] };
  lb_gpu_info gpus[16];
  int ngpu = 0;
  lb_error err = {0};
  if (lb_cuda_devices(gpus, 16, &ngpu, &err) != LB_OK) return cli_fail(&err);
  if (ngpu > 16) ngpu = 16;
  if (json) {
    json_t *feat = json_object(), *g = json_array();
    for (int i = 0; i < NF; i++) json_object_set_new(feat, F[i].name, json_boolean(F[i].on));
    for (int i = 0; i < ngpu; i++) {
      char cc[16];
      snprintf(cc, sizeof cc, "%d.%d", gpus[i].cc_major, gpus[i].cc_minor);
      json_array_append_new(g, json_pack("{s:s, s:s, s:i, s:I}", "name", gpus[i].name,
                                         "compute_capability", cc, "sm_count", gpus[i].sm_count,
                                         "memory_bytes", (json_int_t)gpus[i].memory_bytes));
    }
    json_t *o = json_pack("{s:{s:s, s:i, s:o}, s:b, s:o}", "cpu", "brand", cpu.brand,
                          "logical_cores", cpu.logical_cores, "features", feat, "cuda_built",
                          lb_cuda_built(), "gpus", g);
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(o);
    return 0;
  }
  printf("cpu    %s, %d logical cores\n       ", cpu.brand[0] ? cpu.brand : "(unknown)",
         cpu.logical_cores);
  for (int i = 0; i < NF; i++) printf("%s%s", F[i].on ? F[i].name : "", F[i].on ? " " : "");
  printf("\n");
  if (!lb_cuda_built()) printf("cuda   not built (no nvcc at configure time)\n");
  else if (!ngpu) printf("cuda   built; no device or driver on this machine\n");
  char b[32];
  for (int i = 0; i < ngpu; i++)
    printf("gpu %d  %s, compute %d.%d, %d SMs, %s\n", i, gpus[i].name, gpus[i].cc_major,
           gpus[i].cc_minor, gpus[i].sm_count, cli_bytes(gpus[i].memory_bytes, b, sizeof b));
  return 0;
}
