// The fused gate arithmetic of one row of an LSTM step, forward and backward,
// for the loops in loops.cpp. The formulas are those of functional.py:
//
//   forward:  i, f, o = sigmoid(z_i, z_f, z_o)   g = tanh(z_g)
//             c = f c_prev + i g                 m = o tanh(c)
//   backward: dc += dm o (1 - tanh(c)^2)         dz_o = dm tanh(c) o (1 - o)
//             dz_i = dc g i (1 - i)   dz_f = dc c_prev f (1 - f)   dz_g = dc i (1 - g^2)
//             dc_prev = dc f
//
// Written once over a value type V: a scalar (float, double: std::exp and
// std::tanh) or, where the compiler targets AVX2 and FMA, 8 floats at a time
// with the polynomial exp and tanh below.

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTM_AVX2 1
#if defined(__AVX512F__)
#define LSTM_AVX512 1
#endif
#endif

namespace {

template <typename T>
struct Ops {  // scalars
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
  static T set(double x) { return static_cast<T>(x); }
  static T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
  static T tanh(T x) { return std::tanh(x); }
};

#ifdef LSTM_AVX2
struct F8 {
  __m256 v;
};
inline F8 operator+(F8 a, F8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F8 operator-(F8 a, F8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline F8 operator*(F8 a, F8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }

// exp(x) as 2^n e^r, |r| <= ln2 / 2, with Cephes' degree-6 polynomial for
// e^r (error ~1 ulp); x is clamped to the float range first.
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = fma(n, _mm256_set1_ps(-0.693359375f), x);  // ln2 in two parts
  r = fma(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = fma(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = fma(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = fma(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = fma(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = fma(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = fma(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 1 / d for d in [1, 2e38] (exp8 clamps its argument, so 1 + exp is finite):
// the hardware estimate (12 bits) and one Newton step, r (2 - d r), which
// brings it to float precision (~1 ulp) without a division.
inline __m256 recip8(__m256 d) {
  __m256 r = _mm256_rcp_ps(d);
  return _mm256_mul_ps(r, fma(_mm256_sub_ps(_mm256_setzero_ps(), d), r, _mm256_set1_ps(2.0f)));
}

template <>
struct Ops<F8> {
  static F8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static void store(float* p, F8 v) { _mm256_storeu_ps(p, v.v); }
  static F8 set(double x) { return {_mm256_set1_ps(static_cast<float>(x))}; }
  static F8 sigmoid(F8 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return {recip8(_mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x.v))))};
  }
  // tanh(x) = 2 sigmoid(2x) - 1
  // tanh(x) = 2 sigmoid(2x) - 1, which is exact to an ulp of 1, not of
  // tanh(x): below |x| = 0.625 Cephes' odd polynomial takes over (~1 ulp).
  static F8 tanh(F8 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = recip8(_mm256_add_ps(one, exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), x.v))));
    __m256 large = fma(_mm256_set1_ps(2.0f), s, _mm256_set1_ps(-1.0f));
    __m256 z = _mm256_mul_ps(x.v, x.v);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = fma(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = fma(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = fma(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = fma(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = fma(_mm256_mul_ps(p, z), x.v, x.v);
    return {_mm256_blendv_ps(large, small, _mm256_cmp_ps(z, _mm256_set1_ps(0.390625f), _CMP_LT_OQ))};
  }
};
#endif

#ifdef LSTM_AVX512
// The same with 16 floats: exp16 as exp8 (scalef applies 2^n), and the 14-bit
// reciprocal estimate with one Newton step.
struct F16 {
  __m512 v;
};
inline F16 operator+(F16 a, F16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline F16 operator-(F16 a, F16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline F16 operator*(F16 a, F16 b) { return {_mm512_mul_ps(a.v, b.v)}; }

inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 recip16(__m512 d) {
  __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

template <>
struct Ops<F16> {
  static F16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, F16 v) { _mm512_storeu_ps(p, v.v); }
  static F16 set(double x) { return {_mm512_set1_ps(static_cast<float>(x))}; }
  static F16 sigmoid(F16 x) {
    return {recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x.v))))};
  }
  static F16 tanh(F16 x) {  // as F8's
    __m512 s = recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), x.v))));
    __m512 large = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), s, _mm512_set1_ps(-1.0f));
    __m512 z = _mm512_mul_ps(x.v, x.v);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x.v, x.v);
    return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_set1_ps(0.390625f), _CMP_LT_OQ), large, small)};
  }
};
#endif

template <typename V, typename T>
inline void forward_at(int64_t j, int64_t zs, const T* z, const T* xw, int64_t H, T* c, T* m, T* gates, T* cs) {
  using O = Ops<V>;
  V i = O::sigmoid(O::load(z + j) + O::load(xw + j));
  V f = O::sigmoid(O::load(z + zs + j) + O::load(xw + H + j));
  V g = O::tanh(O::load(z + 2 * zs + j) + O::load(xw + 2 * H + j));
  V o = O::sigmoid(O::load(z + 3 * zs + j) + O::load(xw + 3 * H + j));
  V c_new = f * O::load(c + j) + i * g;
  O::store(c + j, c_new);
  O::store(m + j, o * O::tanh(c_new));
  if (gates) {
    O::store(gates + j, i), O::store(gates + H + j, f);
    O::store(gates + 2 * H + j, g), O::store(gates + 3 * H + j, o);
  }
  if (cs) O::store(cs + j, c_new);
}

template <typename V, typename T>
inline void backward_at(int64_t j, const T* gates, int64_t H, const T* c, const T* c_prev, const T* dm_a,
                        const T* dm_b, T* dc, T* d_z) {
  using O = Ops<V>;
  const V one = O::set(1.0);
  V i = O::load(gates + j), f = O::load(gates + H + j);
  V g = O::load(gates + 2 * H + j), o = O::load(gates + 3 * H + j);
  V tanh_c = O::tanh(O::load(c + j));
  V dm = dm_b ? O::load(dm_a + j) + O::load(dm_b + j) : O::load(dm_a + j);
  V d_c = O::load(dc + j) + dm * o * (one - tanh_c * tanh_c);
  O::store(d_z + j, d_c * g * i * (one - i));
  O::store(d_z + H + j, d_c * O::load(c_prev + j) * f * (one - f));
  O::store(d_z + 2 * H + j, d_c * i * (one - g * g));
  O::store(d_z + 3 * H + j, dm * tanh_c * o * (one - o));
  O::store(dc + j, d_c * f);
}

}  // namespace

// One row, nu hidden units: z holds the recurrent products of the four gates,
// gate k at offset k * zs; xw, gates and d_z hold gate k at offset k * H.
template <typename T>
void cell_forward(int64_t nu, const T* z, int64_t zs, const T* xw, int64_t H, T* c, T* m, T* gates, T* cs) {
  int64_t j = 0;
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>)
    for (; j + 16 <= nu; j += 16) forward_at<F16>(j, zs, z, xw, H, c, m, gates, cs);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>)
    for (; j + 8 <= nu; j += 8) forward_at<F8>(j, zs, z, xw, H, c, m, gates, cs);
#endif
  for (; j < nu; ++j) forward_at<T>(j, zs, z, xw, H, c, m, gates, cs);
}

template <typename T>
void cell_backward(int64_t nu, const T* gates, int64_t H, const T* c, const T* c_prev, const T* dm_a,
                   const T* dm_b, T* dc, T* d_z) {
  int64_t j = 0;
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>)
    for (; j + 16 <= nu; j += 16) backward_at<F16>(j, gates, H, c, c_prev, dm_a, dm_b, dc, d_z);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>)
    for (; j + 8 <= nu; j += 8) backward_at<F8>(j, gates, H, c, c_prev, dm_a, dm_b, dc, d_z);
#endif
  for (; j < nu; ++j) backward_at<T>(j, gates, H, c, c_prev, dm_a, dm_b, dc, d_z);
}

template void cell_forward<float>(int64_t, const float*, int64_t, const float*, int64_t, float*, float*, float*,
                                  float*);
template void cell_forward<double>(int64_t, const double*, int64_t, const double*, int64_t, double*, double*,
                                   double*, double*);
template void cell_backward<float>(int64_t, const float*, int64_t, const float*, const float*, const float*,
                                   const float*, float*, float*);
template void cell_backward<double>(int64_t, const double*, int64_t, const double*, const double*,
                                    const double*, const double*, double*, double*);
