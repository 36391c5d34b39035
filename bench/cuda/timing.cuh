// What the GPU benches share (gemv_sandbox.cu, gemv_lab.cu): a CUDA call that must succeed, and
// the time of a graph of launches.
#ifndef LB_BENCH_CUDA_TIMING_CUH
#define LB_BENCH_CUDA_TIMING_CUH

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(call)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));       \
      exit(2);                                                                                     \
    }                                                                                              \
  } while (0)

// Microseconds per iteration of `iters` iterations captured in one graph on st (issue(i) issues
// iteration i), after `warm` iterations not captured.
template <class Fn>
static double time_graph(cudaStream_t st, int warm, int iters, Fn issue) {
  for (int i = 0; i < warm; i++) issue(i);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < iters; i++) issue(i);
  CK(cudaStreamEndCapture(st, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e0, st));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return ms * 1e3 / iters;
}

#endif
