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

// Launches of up to three dimensions: set gridDim, blockDim, blockIdx and threadIdx (x, y, z each)
// before each per-thread call.
extern "C" void cusim_shim_set_thread(unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                                      unsigned int block_x, unsigned int block_y, unsigned int block_z,
                                      unsigned int block_idx_x, unsigned int block_idx_y, unsigned int block_idx_z,
                                      unsigned int thread_idx_x, unsigned int thread_idx_y,
                                      unsigned int thread_idx_z) {
    gridDim = dim3{grid_x, grid_y, grid_z};
    blockDim = dim3{block_x, block_y, block_z};
    blockIdx = uint3{block_idx_x, block_idx_y, block_idx_z};
    threadIdx = uint3{thread_idx_x, thread_idx_y, thread_idx_z};
}
