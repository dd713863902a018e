// Host shim: lets kernels/*.cu compile as ordinary C++ so the tests can RUN the kernels on the CPU
// (DESIGN section 4). Force-included by the test build:
//   g++ -x c++ -include tests/host_shim/cuda_host_shim.h -shared -fPIC -I kernels kernels/sim_ops.cu
// Each __global__ function becomes a plain exported function; the test sets the (thread-local)
// launch indices with cusim_shim_set_thread() and calls it once per (block, thread) of the grid.
// Faithful only for kernels without shared memory, barriers or atomics, which ours avoid.
// This header is meant for exactly one translation unit (it defines variables and a function).
#pragma once

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

thread_local uint3 threadIdx = {0, 0, 0};
thread_local uint3 blockIdx = {0, 0, 0};
thread_local dim3 blockDim = {1, 1, 1};
thread_local dim3 gridDim = {1, 1, 1};

// Same layout as CUDA's vector types and as numpy complex64 / complex128 (re, im interleaved).
struct float2 { float x, y; };
struct double2 { double x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }

// Math intrinsics: kernels/sim_ops.cu uses none beyond + - * /; add any new one here (e.g. from <cmath>).

// 1-D launches: set gridDim.x, blockDim.x, blockIdx.x, threadIdx.x before each per-thread call.
extern "C" void cusim_shim_set_thread(unsigned int grid_x, unsigned int block_x, unsigned int block_idx,
                                      unsigned int thread_idx) {
    gridDim = dim3{grid_x, 1, 1};
    blockDim = dim3{block_x, 1, 1};
    blockIdx = uint3{block_idx, 0, 0};
    threadIdx = uint3{thread_idx, 0, 0};
}
