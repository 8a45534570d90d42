// The LSTM cell with its variants (layer norm, peepholes, zoneout): the
// arithmetic of one row of a step, forward and backward, for the loops of
// variant_loops.cpp. The math is that of reference.py (gate order i, f, g, o;
// G = 4H; "LN" the layer norm of a row over its units, eps 1e-5):
//
//   forward:  z = xw + (layer norm ? γ_hh r̂ : r)      r̂ = (r - mean r) rstd_r, r = hr W_hh^T
//             z_i += p_i c_prev,  z_f += p_f c_prev     (peepholes)
//             i, f, g = sigmoid(z_i), sigmoid(z_f), tanh(z_g)
//             c̃ = f c_prev + i g,  z_o += p_o c̃ (peepholes),  o = sigmoid(z_o)
//             u = layer norm ? γ_c ĉ + β_c : c̃        ĉ = (c̃ - mean c̃) rstd_c
//             m = o tanh(u),  c = d_c c_prev + (1 - d_c) c̃   (cell zoneout, else c = c̃)
//   backward: dc̃ = dc (1 - d_c),  du = dm o (1 - tanh(u)^2),  dz_o = dm tanh(u) o (1 - o)
//             dc̃ += layer norm ? rstd_c (γ_c du - mean(γ_c du) - ĉ mean(γ_c du ĉ)) : du
//             dc̃ += dz_o p_o (peepholes)
//             dz_i = dc̃ g i (1 - i),  dz_f = dc̃ c_prev f (1 - f),  dz_g = dc̃ i (1 - g^2)
//             dc_prev = dc̃ f + dc d_c + dz_i p_i + dz_f p_f
//             dr = rstd_r (γ_hh dz - mean(γ_hh dz) - r̂ mean(γ_hh dz r̂))   (layer norm, else dr = dz)
//
// The reductions over a row (the means of layer norm) split each pass in
// two: VariantCell has one per-vector function for each part between two
// reductions, written once over the value type V with Ops<V> (vector_math.h)
// as cells/lstm.h, and the row functions at the end sweep a row with them
// and do the reductions (reduce, below). Operands of an option that is off are
// null. NaN propagates as in the plain cell: the reductions and the
// vector functions pass it on.

#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../vector_math.h"

namespace lstm_native {

// Call f(V{}, j) for units j of a row of n, each vector of the widest width
// the build has (floats), then one by one.
template <typename T, typename F>
inline void sweep(int64_t n, const F& f) {
  int64_t j = 0;
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>)
    for (; j + 16 <= n; j += 16) f(Lanes<Avx512>{}, j);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>)
    for (; j + 8 <= n; j += 8) f(Lanes<Avx2>{}, j);
#endif
  for (; j < n; ++j) f(T{}, j);
}

// The sum of f(V{}, j) over the units j of a row of n, as sweep() visits
// them: each lane of a vector adds up its own units (n / 16 of them for
// AVX-512), the lanes and the rest one by one add up in double.
template <typename T, typename F>
inline double reduce(int64_t n, const F& f) {
  double total = 0;
  int64_t j = 0;
  auto lanes = [&](auto v, int64_t width) {
    using V = decltype(v);
    V acc = Ops<V>::set(0.0);
    for (; j + width <= n; j += width) acc = acc + f(v, j);
    alignas(64) float part[16];
    Ops<V>::store(part, acc);
    for (int64_t k = 0; k < width; ++k) total += part[k];
  };
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>) lanes(Lanes<Avx512>{}, 16);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>) lanes(Lanes<Avx2>{}, 8);
#endif
  (void)lanes;
  for (; j < n; ++j) total += f(T{}, j);
  return total;
}

// Mean and 1 / sqrt(var + eps) (biased variance) of x[0 .. n).
template <typename T>
inline void mean_rstd(const T* x, int64_t n, T& mean, T& rstd) {
  const double m = reduce<T>(n, [&](auto v, int64_t j) { return Ops<decltype(v)>::load(x + j); }) / n;
  mean = static_cast<T>(m);
  const double var = reduce<T>(n, [&](auto v, int64_t j) {
                       using O = Ops<decltype(v)>;
                       auto d = O::load(x + j) - O::set(m);
                       return d * d;
                     }) / n;
  rstd = static_cast<T>(1.0 / std::sqrt(var + 1e-5));
}

// The options of a call: what every row of it reads.
template <typename T>
struct VariantWeights {
  int64_t H;
  const T* ln_hh;      // (G,) γ_hh, or null: no layer norm of r
  const T* ln_c;       // (H,) γ_c, or null: no layer norm of c̃
  const T* ln_c_bias;  // (H,) β_c (with ln_c)
  const T* peephole;   // (3, H): p_i, p_f, p_o, or null
};

// One row of a forward step.
template <typename T>
struct VariantForward {
  const T* r;       // (G,): r, or with layer norm r̂
  const T* xw;      // (G,)
  const T* c_prev;  // (H,) the carried cell state of the step before
  const T* d_c;     // (H,) cell zoneout mask, or null
  T* gates;         // (G,) i|f|g|o out
  T* ct;            // (H,) c̃ out (phase 1), in (phase 2)
  T* c;             // (H,) the carried cell state out (may be c_prev: read first)
  T* cs;            // (H,) a copy of it to save, or null
  T* m;             // (H,) o tanh(u) out
  T mean_c, rstd_c;  // layer norm of c̃ (phase 2)
};

// One row of a backward step.
template <typename T>
struct VariantBackward {
  const T* gates;   // (G,) saved i|f|g|o
  const T* c_prev;  // (H,)
  const T* dm;      // (H,) the gradient of m
  const T* d_c;     // (H,) cell zoneout mask, or null
  const T* r_hat;   // (G,) layer norm: the saved r̂
  T* ct;            // (H,) c̃, recomputed (phase A)
  T* du;            // (H,) scratch: du, or with layer norm γ_c du
  T* dc;            // (H,) the carried cell gradient: this step's in, the step before's out
  T* d_z;           // (G,) out
  T* d_r;           // (G,) layer norm: out
  T mean_c, rstd_c, s1, s2;  // layer norm of c̃ and the means of its backward
  T rstd_r, t1, t2;          // layer norm of r: rstd and the means of its backward
  // Sums over the rows of a step (the caller's per-thread accumulators), or null.
  T* acc_b;        // (G,) dz
  T* acc_ln_hh;    // (G,) dz r̂
  T* acc_ln_c;     // (H,) du ĉ
  T* acc_ln_c_b;   // (H,) du
  T* acc_peep;     // (3, H) dz_i c_prev, dz_f c_prev, dz_o c̃
};

struct VariantCell {
  // Forward, up to c̃ and the gates.
  template <typename V, typename T>
  static void forward_gates(int64_t j, const VariantWeights<T>& w, const VariantForward<T>& a) {
    using O = Ops<V>;
    const int64_t H = w.H;
    auto z = [&](int64_t k) {
      V r = O::load(a.r + k * H + j);
      if (w.ln_hh) r = O::load(w.ln_hh + k * H + j) * r;
      return O::load(a.xw + k * H + j) + r;
    };
    V c_prev = O::load(a.c_prev + j);
    V z_i = z(0), z_f = z(1), z_o = z(3);
    if (w.peephole) {
      z_i = z_i + O::load(w.peephole + j) * c_prev;
      z_f = z_f + O::load(w.peephole + H + j) * c_prev;
    }
    V i = O::sigmoid(z_i), f = O::sigmoid(z_f), g = O::tanh(z(2));
    V ct = f * c_prev + i * g;
    if (w.peephole) z_o = z_o + O::load(w.peephole + 2 * H + j) * ct;
    O::store(a.gates + j, i), O::store(a.gates + H + j, f);
    O::store(a.gates + 2 * H + j, g), O::store(a.gates + 3 * H + j, O::sigmoid(z_o));
    O::store(a.ct + j, ct);
  }

  // Forward, from c̃ (and its mean and rstd with layer norm): m and the carried c.
  template <typename V, typename T>
  static void forward_output(int64_t j, const VariantWeights<T>& w, const VariantForward<T>& a) {
    using O = Ops<V>;
    const V one = O::set(1.0);
    V ct = O::load(a.ct + j), u = ct;
    if (w.ln_c)
      u = O::load(w.ln_c + j) * ((ct - O::set(a.mean_c)) * O::set(a.rstd_c)) + O::load(w.ln_c_bias + j);
    O::store(a.m + j, O::load(a.gates + 3 * w.H + j) * O::tanh(u));
    V c = ct;
    if (a.d_c) {
      V d = O::load(a.d_c + j);
      c = d * O::load(a.c_prev + j) + (one - d) * ct;
    }
    O::store(a.c + j, c);
    if (a.cs) O::store(a.cs + j, c);
  }

  // Backward, phase A: c̃ = f c_prev + i g.
  template <typename V, typename T>
  static void backward_cell(int64_t j, const VariantWeights<T>& w, const VariantBackward<T>& a) {
    using O = Ops<V>;
    const int64_t H = w.H;
    O::store(a.ct + j, O::load(a.gates + H + j) * O::load(a.c_prev + j) +
                           O::load(a.gates + j) * O::load(a.gates + 2 * H + j));
  }

  // Phase B: du (γ_c du with layer norm, and its sums) and dz_o.
  template <typename V, typename T>
  static void backward_output(int64_t j, const VariantWeights<T>& w, const VariantBackward<T>& a) {
    using O = Ops<V>;
    const int64_t H = w.H;
    const V one = O::set(1.0);
    V ct = O::load(a.ct + j), u = ct, c_hat = ct;
    if (w.ln_c) {
      c_hat = (ct - O::set(a.mean_c)) * O::set(a.rstd_c);
      u = O::load(w.ln_c + j) * c_hat + O::load(w.ln_c_bias + j);
    }
    V o = O::load(a.gates + 3 * H + j), dm = O::load(a.dm + j), tanh_u = O::tanh(u);
    V du = dm * o * (one - tanh_u * tanh_u);
    V dz_o = dm * tanh_u * o * (one - o);
    O::store(a.d_z + 3 * H + j, dz_o);
    if (w.ln_c) {
      O::store(a.acc_ln_c + j, O::load(a.acc_ln_c + j) + du * c_hat);
      O::store(a.acc_ln_c_b + j, O::load(a.acc_ln_c_b + j) + du);
      du = O::load(w.ln_c + j) * du;
    }
    O::store(a.du + j, du);
  }

  // Phase C: dc̃, the gate gradients, the carried dc, the sums of the step.
  template <typename V, typename T>
  static void backward_gates(int64_t j, const VariantWeights<T>& w, const VariantBackward<T>& a) {
    using O = Ops<V>;
    const int64_t H = w.H;
    const V one = O::set(1.0);
    V i = O::load(a.gates + j), f = O::load(a.gates + H + j), g = O::load(a.gates + 2 * H + j);
    V c_prev = O::load(a.c_prev + j), dc = O::load(a.dc + j), du = O::load(a.du + j);
    V dct = dc, direct = O::set(0.0);
    if (a.d_c) {
      V d = O::load(a.d_c + j);
      dct = dc * (one - d), direct = dc * d;
    }
    if (w.ln_c) {
      V c_hat = (O::load(a.ct + j) - O::set(a.mean_c)) * O::set(a.rstd_c);
      dct = dct + O::set(a.rstd_c) * (du - O::set(a.s1) - c_hat * O::set(a.s2));
    } else {
      dct = dct + du;
    }
    V dz_o = O::load(a.d_z + 3 * H + j);
    if (w.peephole) dct = dct + dz_o * O::load(w.peephole + 2 * H + j);
    V dz_i = dct * g * i * (one - i), dz_f = dct * c_prev * f * (one - f), dz_g = dct * i * (one - g * g);
    O::store(a.d_z + j, dz_i), O::store(a.d_z + H + j, dz_f), O::store(a.d_z + 2 * H + j, dz_g);
    V dc_prev = dct * f + direct;
    if (w.peephole) {
      dc_prev = dc_prev + dz_i * O::load(w.peephole + j) + dz_f * O::load(w.peephole + H + j);
      O::store(a.acc_peep + j, O::load(a.acc_peep + j) + dz_i * c_prev);
      O::store(a.acc_peep + H + j, O::load(a.acc_peep + H + j) + dz_f * c_prev);
      O::store(a.acc_peep + 2 * H + j, O::load(a.acc_peep + 2 * H + j) + dz_o * O::load(a.ct + j));
    }
    O::store(a.dc + j, dc_prev);
    O::store(a.acc_b + j, O::load(a.acc_b + j) + dz_i);
    O::store(a.acc_b + H + j, O::load(a.acc_b + H + j) + dz_f);
    O::store(a.acc_b + 2 * H + j, O::load(a.acc_b + 2 * H + j) + dz_g);
    O::store(a.acc_b + 3 * H + j, O::load(a.acc_b + 3 * H + j) + dz_o);
  }

  // Layer norm of r, backward, over the G units: the sums of dz r̂, then d_r.
  template <typename V, typename T>
  static void backward_norm_sums(int64_t j, const VariantWeights<T>&, const VariantBackward<T>& a) {
    using O = Ops<V>;
    O::store(a.acc_ln_hh + j, O::load(a.acc_ln_hh + j) + O::load(a.d_z + j) * O::load(a.r_hat + j));
  }
  template <typename V, typename T>
  static void backward_norm(int64_t j, const VariantWeights<T>& w, const VariantBackward<T>& a) {
    using O = Ops<V>;
    V gdz = O::load(w.ln_hh + j) * O::load(a.d_z + j);
    O::store(a.d_r + j, O::set(a.rstd_r) * (gdz - O::set(a.t1) - O::load(a.r_hat + j) * O::set(a.t2)));
  }

  // A forward row: r̂ from r in place with layer norm (its rstd into *rstd),
  // the gates, c̃, m and the carried c.
  template <typename T>
  static void forward_row(const VariantWeights<T>& w, VariantForward<T> a, T* r, T* rstd) {
    const int64_t H = w.H;
    if (w.ln_hh) *rstd = standardize_row(4 * H, r);
    a.r = r;
    if (!w.ln_c) {  // no reduction between the two parts: one pass
      sweep<T>(H, [&](auto v, int64_t j) {
        forward_gates<decltype(v)>(j, w, a);
        forward_output<decltype(v)>(j, w, a);
      });
      return;
    }
    sweep<T>(H, [&](auto v, int64_t j) { forward_gates<decltype(v)>(j, w, a); });
    mean_rstd(a.ct, H, a.mean_c, a.rstd_c);
    sweep<T>(H, [&](auto v, int64_t j) { forward_output<decltype(v)>(j, w, a); });
  }

  // A backward row: d_z (and d_r with layer norm), the carried dc, the sums.
  template <typename T>
  static void backward_row(const VariantWeights<T>& w, VariantBackward<T> a) {
    const int64_t H = w.H, G = 4 * H;
    if (!w.ln_c) {  // no reduction between the parts: one pass
      sweep<T>(H, [&](auto v, int64_t j) {
        backward_cell<decltype(v)>(j, w, a);
        backward_output<decltype(v)>(j, w, a);
        backward_gates<decltype(v)>(j, w, a);
      });
    } else {
      sweep<T>(H, [&](auto v, int64_t j) { backward_cell<decltype(v)>(j, w, a); });
      mean_rstd(a.ct, H, a.mean_c, a.rstd_c);
      sweep<T>(H, [&](auto v, int64_t j) { backward_output<decltype(v)>(j, w, a); });
      // The means of γ_c du and γ_c du ĉ (a.du holds γ_c du).
      a.s1 = static_cast<T>(reduce<T>(H, [&](auto v, int64_t j) { return Ops<decltype(v)>::load(a.du + j); }) / H);
      a.s2 = static_cast<T>(reduce<T>(H, [&](auto v, int64_t j) {
                              using O = Ops<decltype(v)>;
                              return O::load(a.du + j) * ((O::load(a.ct + j) - O::set(a.mean_c)) * O::set(a.rstd_c));
                            }) / H);
      sweep<T>(H, [&](auto v, int64_t j) { backward_gates<decltype(v)>(j, w, a); });
    }
    if (w.ln_hh) {  // the means of γ_hh dz and γ_hh dz r̂
      a.t1 = static_cast<T>(reduce<T>(G, [&](auto v, int64_t j) {
                              using O = Ops<decltype(v)>;
                              return O::load(w.ln_hh + j) * O::load(a.d_z + j);
                            }) / G);
      a.t2 = static_cast<T>(reduce<T>(G, [&](auto v, int64_t j) {
                              using O = Ops<decltype(v)>;
                              return O::load(w.ln_hh + j) * O::load(a.d_z + j) * O::load(a.r_hat + j);
                            }) / G);
      sweep<T>(G, [&](auto v, int64_t j) { backward_norm_sums<decltype(v)>(j, w, a); });
      sweep<T>(G, [&](auto v, int64_t j) { backward_norm<decltype(v)>(j, w, a); });
    }
  }

  // A row v (n,) in place: (v - mean v) rstd; returns rstd.
  template <typename T>
  static T standardize_row(int64_t n, T* v) {
    T mean, rstd;
    mean_rstd(v, n, mean, rstd);
    sweep<T>(n, [&](auto x, int64_t j) {
      using O = Ops<decltype(x)>;
      O::store(v + j, (O::load(v + j) - O::set(mean)) * O::set(rstd));
    });
    return rstd;
  }

  // The layer norm of the input projections, a row v (n,) in place:
  // v = γ (v - mean v) rstd + β (β may be null).
  template <typename T>
  static void norm_row(int64_t n, T* v, const T* gain, const T* bias) {
    T mean, rstd;
    mean_rstd(v, n, mean, rstd);
    sweep<T>(n, [&](auto x, int64_t j) {
      using O = Ops<decltype(x)>;
      auto y = O::load(gain + j) * ((O::load(v + j) - O::set(mean)) * O::set(rstd));
      O::store(v + j, bias ? y + O::load(bias + j) : y);
    });
  }

  // Its backward, from the row v (n,) of projections (replaced by their
  // gradient) and the gradient d_z of the normalised row's output:
  // dv = rstd (γ dz - mean(γ dz) - v̂ mean(γ dz v̂)); dγ += dz v̂ into acc.
  template <typename T>
  static void d_norm_row(int64_t n, T* v, const T* d_z, const T* gain, T* acc) {
    T mean, rstd;
    mean_rstd(v, n, mean, rstd);
    sweep<T>(n, [&](auto x, int64_t j) {
      using O = Ops<decltype(x)>;
      auto v_hat = (O::load(v + j) - O::set(mean)) * O::set(rstd);
      O::store(v + j, v_hat);
      O::store(acc + j, O::load(acc + j) + O::load(d_z + j) * v_hat);
    });
    const T m1 = static_cast<T>(reduce<T>(n, [&](auto x, int64_t j) {
                                  using O = Ops<decltype(x)>;
                                  return O::load(gain + j) * O::load(d_z + j);
                                }) / n);
    const T m2 = static_cast<T>(reduce<T>(n, [&](auto x, int64_t j) {
                                  using O = Ops<decltype(x)>;
                                  return O::load(gain + j) * O::load(d_z + j) * O::load(v + j);
                                }) / n);
    sweep<T>(n, [&](auto x, int64_t j) {
      using O = Ops<decltype(x)>;
      auto g_dz = O::load(gain + j) * O::load(d_z + j);
      O::store(v + j, O::set(rstd) * (g_dz - O::set(m1) - O::load(v + j) * O::set(m2)));
    });
  }
};

}  // namespace lstm_native
