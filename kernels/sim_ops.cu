// The four primitives of the SIM forward model and its adjoint (DESIGN sections 1 and 4).
//
// Each kernel computes exactly what the NumPy function of the same name in cusim/_twins.py computes;
// read the layouts there. Rules: one thread per OUTPUT element, grid-stride loops, gathers only (no
// atomics, no shared memory, no barriers), 64-bit element indices. Every output element is written,
// so callers may pass uninitialised buffers. All sizes arrive as long long; within one image plane
// (which always fits in 32 bits) the arithmetic is done in int, because 64-bit division is slow.
#include "cusim_complex.cuh"

typedef long long i64;

// The first element of this thread, and the step of the grid-stride loop.
__device__ __forceinline__ i64 first_index() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 grid_stride() { return (i64)blockDim.x * gridDim.x; }

// u[b, k, i + off, j + off] = pat[k, i, j] * x[b, i, j]; zero in the margin. u is (B, K, Hp, Wp).
template <typename T>
__device__ __forceinline__ void pattern_multiply_pad(const T* __restrict__ x, const T* __restrict__ pat,
                                                     T* __restrict__ u, i64 B, i64 K, i64 H, i64 W,
                                                     i64 Hp, i64 Wp, i64 off) {
    const i64 plane = Hp * Wp, total = B * K * plane;
    for (i64 e = first_index(); e < total; e += grid_stride()) {
        const i64 bk = e / plane;                           // b * K + k
        const int p = (int)(e - bk * plane);                // index within the padded plane
        const int i = p / (int)Wp - (int)off, j = p % (int)Wp - (int)off;  // unpadded row, column
        T v = T(0);
        if (i >= 0 && i < H && j >= 0 && j < W) {
            const i64 b = bk / K, k = bk - b * K;
            const int q = i * (int)W + j;
            v = pat[k * H * W + q] * x[b * H * W + q];
        }
        u[e] = v;
    }
}

// out[b, i, j] = sum_k pat[k, i, j] * w[b, k, i + off, j + off], summed in order k = 0, 1, ...
template <typename T>
__device__ __forceinline__ void pattern_multiply_sum(const T* __restrict__ w, const T* __restrict__ pat,
                                                     T* __restrict__ out, i64 B, i64 K, i64 H, i64 W,
                                                     i64 Hp, i64 Wp, i64 off) {
    const i64 plane = H * W, total = B * plane, padded = Hp * Wp;
    for (i64 e = first_index(); e < total; e += grid_stride()) {
        const i64 b = e / plane;
        const int q = (int)(e - b * plane);                 // i * W + j
        const int i = q / (int)W, j = q % (int)W;
        const T* wb = w + b * K * padded + (i + off) * Wp + (j + off);  // &w[b, 0, i + off, j + off]
        T acc = T(0);
        for (i64 k = 0; k < K; ++k) acc += pat[k * plane + q] * wb[k * padded];
        out[e] = acc;
    }
}

// Y[n, r, c] = sum_{a, b < s} T[R, C] U[n, R, C], R = r + a*hp, C = c + b*wp, over the FULL fine
// spectrum: a column C >= Wf is read as conj(T U) at its Hermitian mirror ((Hp - R) % Hp, Wp - C).
// U is (N, Hp, Wf), T is (Hp, Wf), Y is (N, hp, wcf).
template <typename T>
__device__ __forceinline__ void fold_transfer(const typename cplx<T>::type* __restrict__ U,
                                              const typename cplx<T>::type* __restrict__ Tf,
                                              typename cplx<T>::type* __restrict__ Y, i64 N, i64 Hp,
                                              i64 Wp, i64 s) {
    typedef typename cplx<T>::type Complex;
    const int hp = (int)(Hp / s), wp = (int)(Wp / s), Wf = (int)(Wp / 2 + 1), wcf = wp / 2 + 1;
    const i64 fine_plane = Hp * Wf, plane = (i64)hp * wcf, total = N * plane;
    for (i64 e = first_index(); e < total; e += grid_stride()) {
        const i64 n = e / plane;
        const int p = (int)(e - n * plane);
        const int r = p / wcf, c = p % wcf;
        const Complex* Un = U + n * fine_plane;
        Complex acc = make_cplx(T(0), T(0));
        for (int a = 0; a < s; ++a) {          // tile order a * s + b, as in the twin
            const int R = r + a * hp;
            for (int b = 0; b < s; ++b) {
                const int C = c + b * wp;      // at most wp/2 + (s-1)*wp < Wp, so Wp - C >= 1
                if (C < Wf) {
                    const int q = R * Wf + C;
                    acc = cadd(acc, cmul(Un[q], Tf[q]));
                } else {
                    const int q = ((int)Hp - R) % (int)Hp * Wf + ((int)Wp - C);
                    acc = cadd(acc, cconj(cmul(Un[q], Tf[q])));
                }
            }
        }
        Y[e] = acc;
    }
}

// V[n, R, C] = Tc[R, C] * Rfull[n, R % hp, C % wp]: the camera spectrum repeated over the s x s
// tiles; a camera column c >= wcf is read as conj(Rs) at its mirror ((hp - r) % hp, wp - c).
// Rs is (N, hp, wcf), Tc is (Hp, Wf), V is (N, Hp, Wf).
template <typename T>
__device__ __forceinline__ void unfold_transfer(const typename cplx<T>::type* __restrict__ Rs,
                                                const typename cplx<T>::type* __restrict__ Tc,
                                                typename cplx<T>::type* __restrict__ V, i64 N, i64 Hp,
                                                i64 Wp, i64 s) {
    typedef typename cplx<T>::type Complex;
    const int hp = (int)(Hp / s), wp = (int)(Wp / s), Wf = (int)(Wp / 2 + 1), wcf = wp / 2 + 1;
    const i64 fine_plane = Hp * Wf, cam_plane = (i64)hp * wcf, total = N * fine_plane;
    for (i64 e = first_index(); e < total; e += grid_stride()) {
        const i64 n = e / fine_plane;
        const int q = (int)(e - n * fine_plane);            // R * Wf + C
        const int r = q / Wf % hp, c = q % Wf % wp;         // camera row and column of (R, C)
        const Complex* Rn = Rs + n * cam_plane;
        const Complex g = c < wcf ? Rn[r * wcf + c] : cconj(Rn[(hp - r) % hp * wcf + (wp - c)]);
        V[e] = cmul(g, Tc[q]);
    }
}

// ---- the exported entry points: one per primitive and precision --------------------------------

extern "C" __global__ void pattern_multiply_pad_f32(const float* x, const float* pat, float* u, i64 B, i64 K,
                                                    i64 H, i64 W, i64 Hp, i64 Wp, i64 off) {
    pattern_multiply_pad<float>(x, pat, u, B, K, H, W, Hp, Wp, off);
}
extern "C" __global__ void pattern_multiply_pad_f64(const double* x, const double* pat, double* u, i64 B, i64 K,
                                                    i64 H, i64 W, i64 Hp, i64 Wp, i64 off) {
    pattern_multiply_pad<double>(x, pat, u, B, K, H, W, Hp, Wp, off);
}

extern "C" __global__ void pattern_multiply_sum_f32(const float* w, const float* pat, float* out, i64 B, i64 K,
                                                    i64 H, i64 W, i64 Hp, i64 Wp, i64 off) {
    pattern_multiply_sum<float>(w, pat, out, B, K, H, W, Hp, Wp, off);
}
extern "C" __global__ void pattern_multiply_sum_f64(const double* w, const double* pat, double* out, i64 B,
                                                    i64 K, i64 H, i64 W, i64 Hp, i64 Wp, i64 off) {
    pattern_multiply_sum<double>(w, pat, out, B, K, H, W, Hp, Wp, off);
}

extern "C" __global__ void fold_transfer_f32(const float2* U, const float2* T, float2* Y, i64 N, i64 Hp, i64 Wp,
                                             i64 s) {
    fold_transfer<float>(U, T, Y, N, Hp, Wp, s);
}
extern "C" __global__ void fold_transfer_f64(const double2* U, const double2* T, double2* Y, i64 N, i64 Hp,
                                             i64 Wp, i64 s) {
    fold_transfer<double>(U, T, Y, N, Hp, Wp, s);
}

extern "C" __global__ void unfold_transfer_f32(const float2* R, const float2* Tc, float2* V, i64 N, i64 Hp,
                                               i64 Wp, i64 s) {
    unfold_transfer<float>(R, Tc, V, N, Hp, Wp, s);
}
extern "C" __global__ void unfold_transfer_f64(const double2* R, const double2* Tc, double2* V, i64 N, i64 Hp,
                                               i64 Wp, i64 s) {
    unfold_transfer<double>(R, Tc, V, N, Hp, Wp, s);
}
