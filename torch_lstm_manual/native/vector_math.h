// The vector primitives the cell arithmetic (cells/*.h) is written over:
// Ops<V> for a value type V, a scalar (float, double: std::exp and std::tanh)
// or, where the compiler targets AVX2 and FMA, Lanes<Avx2> (8 floats) and
// Lanes<Avx512> (16 floats) with the polynomial exp and tanh below. Every
// Ops<V> has load, store, set, sigmoid and tanh; V has +, - and *.

#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTM_AVX2 1
#if defined(__AVX512F__)
#define LSTM_AVX512 1
#endif
#endif

namespace lstm_native {

template <typename T>
struct Ops {  // scalars
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
  static T set(double x) { return static_cast<T>(x); }
  static T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
  static T tanh(T x) { return std::tanh(x); }
};

#ifdef LSTM_AVX2
// The primitives of one vector width: 8 floats (AVX2) or 16 (AVX-512). The
// math of the gates, below, is written once over them.
struct Avx2 {
  using R = __m256;
  static R set(float x) { return _mm256_set1_ps(x); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R round(R x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p 2^n, for an integral n in the range of float exponents.
  static R scale(R p, R n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static R reciprocal_estimate(R d) { return _mm256_rcp_ps(d); }  // 12 bits
  // a < b ? if_less : otherwise, lane by lane.
  static R select_less(R a, R b, R if_less, R otherwise) {
    return _mm256_blendv_ps(otherwise, if_less, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
};
#endif

#ifdef LSTM_AVX512
struct Avx512 {
  using R = __m512;
  static R set(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R round(R x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R scale(R p, R n) { return _mm512_scalef_ps(p, n); }
  static R reciprocal_estimate(R d) { return _mm512_rcp14_ps(d); }  // 14 bits
  static R select_less(R a, R b, R if_less, R otherwise) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), otherwise, if_less);
  }
};
#endif

#ifdef LSTM_AVX2
// A vector of floats of the width S, as the value type of a cell's forward and backward.
template <typename S>
struct Lanes {
  typename S::R v;
};
template <typename S>
inline Lanes<S> operator+(Lanes<S> a, Lanes<S> b) { return {S::add(a.v, b.v)}; }
template <typename S>
inline Lanes<S> operator-(Lanes<S> a, Lanes<S> b) { return {S::sub(a.v, b.v)}; }
template <typename S>
inline Lanes<S> operator*(Lanes<S> a, Lanes<S> b) { return {S::mul(a.v, b.v)}; }

template <typename S>
struct Ops<Lanes<S>> {
  using R = typename S::R;
  static Lanes<S> load(const float* p) { return {S::load(p)}; }
  static void store(float* p, Lanes<S> v) { S::store(p, v.v); }
  static Lanes<S> set(double x) { return {S::set(static_cast<float>(x))}; }

  // exp(x) as 2^n e^r, |r| <= ln2 / 2, with Cephes' degree-6 polynomial for
  // e^r (error ~1 ulp); x is clamped to the float range first. The bounds are
  // the first operands: max_ps and min_ps return their second operand when
  // either is NaN, so a NaN x stays NaN (with x first, it became a bound).
  static R exp(R x) {
    x = S::min(S::set(88.0f), S::max(S::set(-87.3f), x));
    R n = S::round(S::mul(x, S::set(1.44269504088896341f)));
    R r = S::fma(n, S::set(-0.693359375f), x);  // ln2 in two parts
    r = S::fma(n, S::set(2.12194440e-4f), r);
    R p = S::set(1.9875691500e-4f);
    p = S::fma(p, r, S::set(1.3981999507e-3f));
    p = S::fma(p, r, S::set(8.3334519073e-3f));
    p = S::fma(p, r, S::set(4.1665795894e-2f));
    p = S::fma(p, r, S::set(1.6666665459e-1f));
    p = S::fma(p, r, S::set(5.0000001201e-1f));
    p = S::fma(p, S::mul(r, r), S::add(r, S::set(1.0f)));
    return S::scale(p, n);
  }

  // 1 / d for d in [1, 2e38] (exp clamps its argument, so 1 + exp is finite):
  // the hardware estimate and one Newton step, r (2 - d r), which brings it
  // to float precision (~1 ulp) without a division.
  static R reciprocal(R d) {
    R r = S::reciprocal_estimate(d);
    return S::mul(r, S::fma(S::sub(S::set(0.0f), d), r, S::set(2.0f)));
  }

  // Where the exact result rounds to a constant, that constant: for x above
  // `above`, `high`; below `below`, `low`. The clamped exp and the Newton
  // step land an ulp or so off it (1 - 6e-8, 6e-39), and an ulp matters
  // where the result meets an infinity: sigmoid(+inf) must be exactly 1 for
  // (1 - f) inf to be NaN, as in torch. NaN compares false and stays NaN.
  static R saturate(R x, R result, float below, float low, float above, float high) {
    result = S::select_less(x, S::set(below), S::set(low), result);
    return S::select_less(S::set(above), x, S::set(high), result);
  }

  // 1 / (1 + exp(-x)); exactly 0 where exp(-x) overflows float (x < -88.72)
  // and exactly 1 where 1 + exp(-x) rounds to 1 (x > 24 ln 2 = 16.64).
  static Lanes<S> sigmoid(Lanes<S> x) {
    R s = reciprocal(S::add(S::set(1.0f), exp(S::sub(S::set(0.0f), x.v))));
    return {saturate(x.v, s, -88.73f, 0.0f, 16.64f, 1.0f)};
  }

  // tanh(x) = 2 sigmoid(2x) - 1, which is exact to an ulp of 1, not of
  // tanh(x): below |x| = 0.625 Cephes' odd polynomial takes over (~1 ulp).
  // Exactly +-1 where tanh(x) rounds to it (|x| > 13 ln 2 = 9.011).
  static Lanes<S> tanh(Lanes<S> x) {
    R s = reciprocal(S::add(S::set(1.0f), exp(S::mul(S::set(-2.0f), x.v))));
    R large = S::fma(S::set(2.0f), s, S::set(-1.0f));
    R z = S::mul(x.v, x.v);
    R p = S::set(-5.70498872745e-3f);
    p = S::fma(p, z, S::set(2.06390887954e-2f));
    p = S::fma(p, z, S::set(-5.37397155531e-2f));
    p = S::fma(p, z, S::set(1.33314422036e-1f));
    p = S::fma(p, z, S::set(-3.33332819422e-1f));
    R small = S::fma(S::mul(p, z), x.v, x.v);
    return {saturate(x.v, S::select_less(z, S::set(0.390625f), small, large), -9.02f, -1.0f, 9.02f, 1.0f)};
  }
};
#endif

}  // namespace lstm_native
