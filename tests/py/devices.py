"""lowbit devices: the CPU features it reports agree with the kernel's view (/proc/cpuinfo flags), an
independent reading of the same cpuid bits (the kernel also masks what the OS does not enable)."""
import json

from common import lowbit, run_tests

FLAGS = {"avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f", "avx512bw": "avx512bw",
         "avx512vl": "avx512vl", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
         "avx512_fp16": "avx512_fp16", "amx_tile": "amx_tile", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16"}


def test_cpu_features_match_proc_cpuinfo():
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert flags, "no flags line in /proc/cpuinfo"
    info = json.loads(lowbit("devices", "--json").stdout)
    for ours, kernel in FLAGS.items():
        assert info["cpu"]["features"][ours] == (kernel in flags), (ours, info["cpu"]["features"][ours])
    assert info["cpu"]["logical_cores"] >= 1


def test_gpus_listed_only_when_built():
    info = json.loads(lowbit("devices", "--json").stdout)
    assert info["cuda_built"] or info["gpus"] == []
    for g in info["gpus"]:
        assert g["memory_bytes"] > 0 and g["sm_count"] > 0 and "." in g["compute_capability"]


if __name__ == "__main__":
    run_tests([test_cpu_features_match_proc_cpuinfo, test_gpus_listed_only_when_built])
