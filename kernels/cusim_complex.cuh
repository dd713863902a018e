// Complex arithmetic on float2 / double2 (x = real part, y = imaginary part).
//
// No CUDA library headers: float2/double2 and make_float2/make_double2 come from NVRTC's built-in
// types, from nvcc's implicit cuda_runtime.h, or from tests/host_shim/cuda_host_shim.h on the host.
#pragma once

// The complex type that goes with a real type: cplx<float>::type is float2.
template <typename T> struct cplx;
template <> struct cplx<float> { typedef float2 type; };
template <> struct cplx<double> { typedef double2 type; };

__host__ __device__ __forceinline__ float2 make_cplx(float re, float im) { return make_float2(re, im); }
__host__ __device__ __forceinline__ double2 make_cplx(double re, double im) { return make_double2(re, im); }

__host__ __device__ __forceinline__ float2 cmul(float2 a, float2 b) {
    return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__host__ __device__ __forceinline__ double2 cmul(double2 a, double2 b) {
    return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

__host__ __device__ __forceinline__ float2 cconj(float2 a) { return make_float2(a.x, -a.y); }
__host__ __device__ __forceinline__ double2 cconj(double2 a) { return make_double2(a.x, -a.y); }

__host__ __device__ __forceinline__ float2 cadd(float2 a, float2 b) {
    return make_float2(a.x + b.x, a.y + b.y);
}
__host__ __device__ __forceinline__ double2 cadd(double2 a, double2 b) {
    return make_double2(a.x + b.x, a.y + b.y);
}

__host__ __device__ __forceinline__ float2 cscale(float2 a, float t) { return make_float2(a.x * t, a.y * t); }
__host__ __device__ __forceinline__ double2 cscale(double2 a, double t) { return make_double2(a.x * t, a.y * t); }
