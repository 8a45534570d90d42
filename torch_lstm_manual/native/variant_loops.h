// The loops of the LSTM variants (layer norm, peepholes, zoneout, recurrent
// dropout; any of them, with or without a projection), as variant_bindings.cpp calls
// them: the arguments and results of reference.py's forward_loop and
// backward_loop with their Weights and Masks. The plain LSTM keeps its own
// drivers (loops.h).
//
// Layout: the rows of a sequence never meet those of another, and layer norm
// needs whole rows (its means run over all G units of r and all H units of
// c̃), so the thread team splits the batch by rows: thread k owns rows
// [r0, r1) of every step, computes their products of the step (BLAS, blas.h,
// against the whole weights) and their cell arithmetic (cells/variants.h),
// and needs no barrier. Sums over the rows (d_b, the gains' and peepholes'
// gradients) add up per thread, a step at a time in T and over the steps in
// double, then over the threads in order.
//
// Shapes: T, B, H, P, G = 4H, N = sum(batch_sizes) as in loops.h.

#pragma once

#include <cstdint>
#include <vector>

#include "cells/variants.h"
#include "loops.h"

namespace lstm_native {

// The masks of a call, each null where its option is off.
template <typename T>
struct VariantMasks {
  const T* recurrent;  // (B, P) on h_prev before w_hh
  const T* cell;       // (N, H) zoneout of c, from row `row0`: row k at cell + (k - row0) H
  const T* hidden;     // (N, P) zoneout of h, likewise
  int64_t row0 = 0;
};

// The steps [begin, end) of the loop order (Steps::order) that a call runs,
// and the first row of its step buffers: xw, r_hat, r_rstd, d_z and d_r hold
// the rows from row0 on (row k at k - row0), the rest (y, gates, cs, d_y,
// d_h) every row. A whole pass is {0, T, 0}; the passes from the inputs
// (variant_input.cpp) run the steps a chunk at a time, the forward chunks
// in order, the backward ones in reverse, and the step buffers hold a
// chunk's rows.
struct StepRange {
  int64_t begin, end, row0;
};

// Forward: y (N, P); gates (N, G), cs (N, H), with layer norm of r r_hat (N, G)
// and r_rstd (N,), where not null (save); c_run (B, H) holds c0 in and c_n out.
template <typename T>
void forward_variant(const Steps& s, const StepRange& range, const T* xw, const T* h0, const T* w_hh, const T* w_hr,
                     int64_t P, const VariantWeights<T>& w, const VariantMasks<T>& masks, T* y, T* gates, T* cs,
                     T* r_hat, T* r_rstd, T* c_run);

// The sums over the rows that a backward pass adds up: d_b (G,) | d_ln_hh
// (G,) | d_ln_c, d_ln_c_bias (H,) | d_peephole (3, H), each where its option
// is on, in double over every step of the calls of a pass.
struct VariantSums {
  int64_t H, at_ln_hh, at_ln_c, at_peep;  // the units; the offsets of the options' sums (-1: off)
  std::vector<double> total;
  template <typename T>
  explicit VariantSums(const VariantWeights<T>& w);
  // The sums in T into the gradients (null where off).
  template <typename T>
  void store(T* d_b, T* d_ln_hh, T* d_ln_c, T* d_ln_c_bias, T* d_peephole) const;
};

// Backward: d_z (N, G), d_r (N, G, with layer norm), d_h (N, P, with w_hr);
// dh_run (B, P) and dc_run (B, H) hold d_hn, d_cn in and d_h0, d_c0 out;
// the sums are added into `sums`.
template <typename T>
void backward_variant(const Steps& s, const StepRange& range, const T* d_y, const T* gates, const T* cs, const T* c0,
                      const T* r_hat, const T* r_rstd, const T* w_hh, const T* w_hr, int64_t P,
                      const VariantWeights<T>& w, const VariantMasks<T>& masks, T* d_z, T* d_r, T* d_h, T* dh_run,
                      T* dc_run, VariantSums& sums);

// The layer norm of the input projections v (N, n), in place, rows split
// over the threads: v = γ LN(v) + β (β may be null).
template <typename T>
void normalize_rows(int64_t N, int64_t n, T* v, const T* gain, const T* bias);

// Its backward: v (N, n), the projections, replaced by their gradients, from
// the gradients d_z (N, n) of the output; d_gain (n,) = Σ d_z v̂.
template <typename T>
void d_normalize_rows(int64_t N, int64_t n, T* v, const T* d_z, const T* gain, T* d_gain);

// v (N, n) in place: each row (v - mean) rstd, its rstd into rstd (N,).
template <typename T>
void standardize_rows(int64_t N, int64_t n, T* v, T* rstd);

}  // namespace lstm_native
