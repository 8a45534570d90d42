// The loop drivers of the two LSTM time loops of torch_lstm_manual/functional.py,
// as the Python bindings (bindings.cpp) call them.
//
// Same arguments and results as the Python reference `forward_loop` and
// `backward_loop`, which hold the math and the packed layout, plus the two
// passes LSTMFunction runs, `forward_input` (the input projection, then the
// forward loop) and `backward_input` (the backward loop, then its products);
// the loops only change how the work is laid out:
//
// * One parallel region for the whole loop (parallel.h). Thread k owns a
//   slice of the hidden units (columns): it computes the recurrent product for
//   the four gate rows of its units only, then the cell update of its units,
//   and waits at one barrier per step (two with a projection) for the others.
// * float32 without a projection, on AVX2 / AVX-512 (tiled_loops.cpp): every
//   product of a step on register tiles (tiles.cpp) over weights packed once
//   per call, the gate arithmetic on each tile while it is in L1. The forward
//   pass adds the input projection on the same tiles; the backward pass
//   computes d_x, dW_ih, dW_hh and d_h0 a step at a time, keeping the gate
//   gradients of two steps only.
// * Otherwise (float64, a projection, no AVX2; blas_loops.cpp): BLAS
//   (blas.cpp) for every per-step product, and the products over all steps as
//   single matrix products before and after the loop (bindings.cpp).
// * The gate arithmetic of a row is one fused pass over its units, the same
//   for every driver: cell_forward<Cell> / cell_backward<Cell> (cell.h) of the
//   cell kind the drivers are instantiated for; the backward pass recomputes
//   tanh(c) inline instead of keeping (N, H) factors.
// * Packed sequences: step t touches its batch_sizes[t] running rows only.
// * Calls with a variant of the cell (layer norm, peepholes, zoneout,
//   recurrent dropout) run the loops of variant_loops.h instead.
//
// Shapes: T, B, I, H, P (time, batch, input, hidden, projection), G = 4H,
// N = sum(batch_sizes); b is the rows of the current step.

#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "tiles.h"

namespace lstm_native {

// The packed layout: rows of step t are [offset[t], offset[t] + size[t]).
struct Steps {
  std::vector<int64_t> offset, size, order;  // order: steps in forward-loop order
  int64_t T, N, B;
  // Size of the step visited before / after `i`-th in `order` (0 if none).
  int64_t size_at(int64_t i) const { return i < 0 || i >= T ? 0 : size[order[i]]; }
};

// Whether the float32 loops without a projection run on tiles (tiles.cpp).
template <typename T>
inline bool tiled(const T* w_hr) {
  return std::is_same_v<T, float> && w_hr == nullptr && tile_width() > 0;
}

// What a row adds to its recurrent product before the gates: its row of the
// input projections xw (N, 4H), or, when x is given, x (N, I) @ w_ih^T
// computed on the same tiles, plus the bias (4H,), the same for every row.
struct StepInput {
  const float* xw;
  const float* x;
  int64_t I;
  const float* w_ih;
  const float* bias;
};

// What backward_tiled leaves besides d_c0 (in dc_run) and d_b: either every
// row of d_z, for the caller's products, or, with d_z null, the products
// themselves, a step at a time on the same tiles: d_x = d_z w_ih,
// dW_ih = d_z^T x, dW_hh = d_z^T h_prev, d_h0, with only the last two steps'
// rows of d_z kept (z_steps).
struct StepGrads {
  float* d_z;           // (N, 4H), or null
  float* z_steps;       // (2, B, 4H), when d_z is null
  const float* x;       // (N, I)
  int64_t I;
  const float* w_ih;    // (4H, I)
  const float* y;       // (N, H): the outputs, the previous states of the next steps
  const float* h0;      // (B, H)
  float* d_x;           // (N, I), or null: not needed
  float* d_w_ih;        // (4H, I), or null: not needed (then d_w_hh too)
  float* d_w_hh;        // (4H, H)
  float* d_h0;          // (B, H)
};

// Column sums of d_z, the bias gradient, for one thread's units [u0, u0 + nu):
// the rows of a step add up in T (a few dozen rows), and each step's sums add
// up in double, so that the sum over N rows loses nothing in float32.
template <typename T>
struct ColumnSums {
  int64_t H, u0, nu;
  std::vector<T> step;
  std::vector<double> total;
  ColumnSums(int64_t H, int64_t u0, int64_t nu) : H(H), u0(u0), nu(nu), step(4 * nu), total(4 * nu) {}
  // Add gate q, units u0 + lo ... u0 + lo + n - 1 of a row of d_z.
  void add(const T* d_z_row, int64_t lo, int64_t n) {
    for (int64_t q = 0; q < 4; ++q) {
      T* to = step.data() + q * nu + lo;
      const T* from = d_z_row + q * H + u0 + lo;
      for (int64_t j = 0; j < n; ++j) to[j] += from[j];
    }
  }
  void end_step() {
    for (int64_t k = 0; k < 4 * nu; ++k) total[k] += step[k], step[k] = T(0);
  }
  void store(T* d_b) const {
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t j = 0; j < nu; ++j) d_b[q * H + u0 + j] = static_cast<T>(total[q * nu + j]);
  }
};

// The drivers, for every cell kind of LSTM_CELL_KINDS (cell.h). Each runs the
// whole loop on its own thread team; the tiled ones on `threads` threads.

// The forward loop on tiles (float32, no projection): y (N, H), and where not
// null the gates (N, 4H) and cell states cs (N, H); c_run (B, H) holds c0 in
// and c_n out.
template <typename Cell>
void forward_tiled(const Steps& s, const StepInput& in, const float* h0, const float* w_hh, int64_t H, float* y,
                   float* gates, float* cs, float* c_run, int threads);

// The backward loop on tiles: d_c0 into dc_run (B, H; d_cn in), d_b (4H,),
// and what StepGrads says.
template <typename Cell>
void backward_tiled(const Steps& s, const float* d_y, const float* d_hn, const float* gates, const float* cs,
                    const float* c0, const float* w_hh, int64_t H, const StepGrads& out, float* dc_run, float* d_b,
                    int threads);

// The forward loop with BLAS products, with a projection w_hr (P, H) or
// without (null, P = H); z (B, 4H), m (B, H, with w_hr) and w_perm (4H, P)
// are scratch.
template <typename Cell, typename T>
void forward_blas(const Steps& s, const T* xw, const T* h0, const T* w_hh, const T* w_hr, int64_t H, int64_t P,
                  T* y, T* gates, T* cs, T* c_run, T* z, T* m, T* w_perm);

// The backward loop with BLAS products: every row of d_z (N, 4H), d_h (N, P,
// with w_hr), d_c0 into dc_run, d_b; dh (B, P) and dm (B, H, with w_hr) are
// scratch.
template <typename Cell, typename T>
void backward_blas(const Steps& s, const T* d_y, const T* d_hn, const T* gates, const T* cs, const T* c0,
                   const T* w_hh, const T* w_hr, int64_t H, int64_t P, T* d_z, T* d_h, T* dc_run, T* dh, T* dm,
                   T* d_b);

}  // namespace lstm_native
