// The four primitives of the SIM forward model and its adjoint (DESIGN sections 1 and 4).
//
// Each kernel computes exactly what the NumPy function of the same name in cusim/_twins.py computes;
// read the layouts there. Rules: one thread per OUTPUT element, grid-stride loops, gathers only (no
// atomics, no shared memory, no barriers). Every output element is written, so callers may pass
// uninitialised buffers. All sizes arrive as long long.
//
// Launch shape: every output is a stack of planes (planes, rows, columns), and the launch is 3-D to
// match: x runs over columns (a warp reads and writes consecutive addresses), y over rows, z over
// planes, each axis a grid-stride loop of its own. So no thread divides to find its element: the
// 1-D layout this replaced did 64-bit and 32-bit divisions per element (each a software sequence on the
// GPU; by instruction count about as long as the pass's memory traffic at 2048 x 2048, not timed). Plane offsets
// are 64-bit (B * K * Hp * Wp can pass 2^31); within one plane, which always fits in 32 bits, the
// arithmetic is int.
#include "cusim_complex.cuh"

typedef long long i64;

// The grid-stride loops over planes (z), rows (y) and columns (x) of this thread.
#define FOR_PLANES(n, N) \
    for (i64 n = (i64)blockIdx.z * blockDim.z + threadIdx.z; n < (N); n += (i64)gridDim.z * blockDim.z)
#define FOR_ROWS(i, H) \
    for (int i = (int)(blockIdx.y * blockDim.y + threadIdx.y); i < (int)(H); i += (int)(gridDim.y * blockDim.y))
#define FOR_COLUMNS(j, W) \
    for (int j = (int)(blockIdx.x * blockDim.x + threadIdx.x); j < (int)(W); j += (int)(gridDim.x * blockDim.x))

// u[b, k, i + off, j + off] = pat[k, i, j] * x[b, i, j]; zero in the margin. u is (B, K, Hp, Wp).
// Planes: b * K + k; rows and columns of the padded plane.
template <typename T>
__device__ __forceinline__ void pattern_multiply_pad(const T* __restrict__ x, const T* __restrict__ pat,
                                                     T* __restrict__ u, i64 B, i64 K, i64 H, i64 W,
                                                     i64 Hp, i64 Wp, i64 off) {
    const int h = (int)H, w = (int)W, o = (int)off;
    FOR_PLANES(bk, B * K) {
        const i64 b = bk / K, k = bk - b * K;               // once per plane, not per element
        const T* xb = x + b * H * W;
        const T* pk = pat + k * H * W;
        T* ub = u + bk * Hp * Wp;
        FOR_ROWS(R, Hp) {
            const int i = R - o;                            // unpadded row
            const bool row_inside = i >= 0 && i < h;
            FOR_COLUMNS(C, Wp) {
                const int j = C - o;                        // unpadded column
                T v = T(0);
                if (row_inside && j >= 0 && j < w) v = pk[i * w + j] * xb[i * w + j];
                ub[R * (int)Wp + C] = v;
            }
        }
    }
}

// out[b, i, j] = sum_k pat[k, i, j] * w[b, k, i + off, j + off], summed in order k = 0, 1, ...
// Planes: b; rows and columns of the unpadded image.
template <typename T>
__device__ __forceinline__ void pattern_multiply_sum(const T* __restrict__ w, const T* __restrict__ pat,
                                                     T* __restrict__ out, i64 B, i64 K, i64 H, i64 W,
                                                     i64 Hp, i64 Wp, i64 off) {
    const i64 plane = H * W, padded = Hp * Wp;
    FOR_PLANES(b, B) {
        const T* wb = w + b * K * padded + off * Wp + off;  // &w[b, 0, off, off]
        T* ob = out + b * plane;
        FOR_ROWS(i, H) {
            FOR_COLUMNS(j, W) {
                const int q = i * (int)W + j;
                const T* wq = wb + i * (int)Wp + j;         // &w[b, 0, i + off, j + off]
                T acc = T(0);
                for (i64 k = 0; k < K; ++k) acc += pat[k * plane + q] * wq[k * padded];
                ob[q] = acc;
            }
        }
    }
}

// Y[n, r, c] = sum_{a, b < s} T[R, C] U[n, R, C], R = r + a*hp, C = c + b*wp, over the FULL fine
// spectrum: a column C >= Wf is read as conj(T U) at its Hermitian mirror ((Hp - R) % Hp, Wp - C).
// U is (N, Hp, Wf), T is (Hp, Wf), Y is (N, hp, wcf). Planes: n; rows and columns of the camera half spectrum.
template <typename T>
__device__ __forceinline__ void fold_transfer(const typename cplx<T>::type* __restrict__ U,
                                              const typename cplx<T>::type* __restrict__ Tf,
                                              typename cplx<T>::type* __restrict__ Y, i64 N, i64 Hp,
                                              i64 Wp, i64 s) {
    typedef typename cplx<T>::type Complex;
    const int S = (int)s, hp = (int)(Hp / s), wp = (int)(Wp / s), Wf = (int)(Wp / 2 + 1), wcf = wp / 2 + 1;
    const int H = (int)Hp, W = (int)Wp;
    FOR_PLANES(n, N) {
        const Complex* Un = U + n * Hp * Wf;
        Complex* Yn = Y + n * hp * wcf;
        FOR_ROWS(r, hp) {
            FOR_COLUMNS(c, wcf) {
                Complex acc = make_cplx(T(0), T(0));
                for (int a = 0; a < S; ++a) {          // tile order a * s + b, as in the twin
                    const int R = r + a * hp;
                    const int mirror_row = R == 0 ? 0 : H - R;   // (Hp - R) % Hp
                    for (int b = 0; b < S; ++b) {
                        const int C = c + b * wp;      // at most wp/2 + (s-1)*wp < Wp, so Wp - C >= 1
                        if (C < Wf) {
                            const int q = R * Wf + C;
                            acc = cadd(acc, cmul(Un[q], Tf[q]));
                        } else {
                            const int q = mirror_row * Wf + (W - C);
                            acc = cadd(acc, cconj(cmul(Un[q], Tf[q])));
                        }
                    }
                }
                Yn[r * wcf + c] = acc;
            }
        }
    }
}

// V[n, R, C] = Tc[R, C] * Rfull[n, R % hp, C % wp]: the camera spectrum repeated over the s x s
// tiles; a camera column c >= wcf is read as conj(Rs) at its mirror ((hp - r) % hp, wp - c).
// Rs is (N, hp, wcf), Tc is (Hp, Wf), V is (N, Hp, Wf). Planes: n; rows and columns of the fine half spectrum.
template <typename T>
__device__ __forceinline__ void unfold_transfer(const typename cplx<T>::type* __restrict__ Rs,
                                                const typename cplx<T>::type* __restrict__ Tc,
                                                typename cplx<T>::type* __restrict__ V, i64 N, i64 Hp,
                                                i64 Wp, i64 s) {
    typedef typename cplx<T>::type Complex;
    const int hp = (int)(Hp / s), wp = (int)(Wp / s), Wf = (int)(Wp / 2 + 1), wcf = wp / 2 + 1;
    FOR_PLANES(n, N) {
        const Complex* Rn = Rs + n * hp * wcf;
        Complex* Vn = V + n * Hp * Wf;
        FOR_ROWS(R, Hp) {
            const int r = R % hp, mirror_row = r == 0 ? 0 : hp - r;  // camera row, and (hp - r) % hp
            FOR_COLUMNS(C, Wf) {
                const int q = R * Wf + C;
                const int c = C % wp;                   // camera column of (R, C)
                const Complex g = c < wcf ? Rn[r * wcf + c] : cconj(Rn[mirror_row * wcf + (wp - c)]);
                Vn[q] = cmul(g, Tc[q]);
            }
        }
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
