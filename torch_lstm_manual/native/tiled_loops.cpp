// The float32 loops without a projection on register tiles (tiles.cpp): see
// loops.h.

#include <algorithm>
#include <memory>
#include <vector>

#include "cell.h"
#include "loops.h"
#include "parallel.h"
#include "tiles.h"

namespace lstm_native {

namespace {

// The panels of the gate rows of units [u0, u1) of w (4H, K), in blocks of W
// units: row k of block ub is [i | f | g | o] of its W units, zero past u1.
void pack_gate_panels(const float* w, int64_t K, int64_t H, int64_t u0, int64_t u1, int64_t W, float* panels) {
  const int64_t blocks = (u1 - u0 + W - 1) / W;
  for (int64_t ub = 0; ub < blocks; ++ub)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t q = 0; q < 4; ++q)
        for (int64_t v = 0; v < W; ++v) {
          const int64_t unit = u0 + ub * W + v;
          panels[((ub * K + k) * 4 + q) * W + v] = unit < u1 ? w[(q * H + unit) * K + k] : 0.0f;
        }
}

// forward_tiled's thread body: for each block of W units, the step's
// product is a (b, 4W) tile, [i | f | g | o] of the block's units for every
// row, and the gates of the block run on it right away.
template <typename Cell>
void forward_thread(const Steps& s, const StepInput& in, const float* h0, const float* w_hh, int64_t H, float* y,
                    float* gates, float* cs, float* c_run, int tid, int nt, Team& team) {
  const int64_t G = 4 * H, P = H, W = tile_width(), I = in.x ? in.I : 0;
  auto [u0, u1] = columns(H, tid, nt);
  const int64_t blocks = (u1 - u0 + W - 1) / W;
  std::unique_ptr<Scratch> panel_h_, panel_x_, tile_;
  bool ok = true;
  try {
    panel_h_ = std::make_unique<Scratch>(blocks * P * 4 * W);
    panel_x_ = std::make_unique<Scratch>(blocks * I * 4 * W + 1);
    tile_ = std::make_unique<Scratch>(s.B * 4 * W);
  } catch (...) {
    ok = false;
  }
  if (!team.all_allocated(ok, nt)) return;
  Scratch &panel_h = *panel_h_, &panel_x = *panel_x_, &tile = *tile_;
  pack_gate_panels(w_hh, P, H, u0, u1, W, panel_h.p);
  if (in.x) pack_gate_panels(in.w_ih, I, H, u0, u1, W, panel_x.p);
  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.order[i], b = s.size[t], row0 = s.offset[t];
    const int64_t ran = i == 0 ? 0 : std::min(b, s.size_at(i - 1));  // rows that ran the step before
    const float* h_prev = ran > 0 ? y + s.offset[s.order[i - 1]] * P : nullptr;
    const float* x = in.x ? in.x + row0 * I : nullptr;
    for (int64_t ub = 0; ub < blocks; ++ub) {
      const int64_t u = u0 + ub * W, n = std::min(W, u1 - u);
      const float *ph = panel_h.p + ub * P * 4 * W, *px = panel_x.p + ub * I * 4 * W;
      tile_product(ran, 4, tile.p, P, h_prev, P, ph, I, x, I, px);
      tile_product(b - ran, 4, tile.p + ran * 4 * W, P, h0 + ran * P, P, ph, I, x ? x + ran * I : nullptr, I, px);
      for (int64_t r = 0; r < b; ++r) {
        const int64_t row = row0 + r;
        const float* add = in.x ? in.bias + u : in.xw + row * G + u;
        cell_forward<Cell>(n, CellForward<float>{tile.p + r * 4 * W, W, add, H, c_run + r * H + u, y + row * P + u,
                                                 gates ? gates + row * G + u : nullptr,
                                                 cs ? cs + row * H + u : nullptr});
      }
    }
    barrier(nt);
  }
}

// The panels of columns [j0, j1) of w (K, n; row stride n), in blocks of W
// columns: row k of block jb is w[k, j0 + jb W ...], zero past j1.
void pack_column_panels(const float* w, int64_t K, int64_t n, int64_t j0, int64_t j1, int64_t W, float* panels) {
  const int64_t blocks = (j1 - j0 + W - 1) / W;
  for (int64_t jb = 0; jb < blocks; ++jb)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t v = 0; v < W; ++v) {
        const int64_t j = j0 + jb * W + v;
        panels[(jb * K + k) * W + v] = j < j1 ? w[k * n + j] : 0.0f;
      }
}

// The weight gradients of one thread's gate rows, [dW_ih | dW_hh] (4 nu,
// I + H): the products of kStepsPerSum steps add up in float (step), then
// into double (total), so that the sum over N rows keeps nn.LSTM's accuracy.
constexpr int64_t kStepsPerSum = 8;
struct WeightSums {
  bool wanted;  // only in the one-pass backward, and where the weights need gradients
  int64_t H, u0, nu, I, ld;
  Scratch step;
  std::vector<double> total;
  WeightSums(bool wanted, int64_t H, int64_t u0, int64_t nu, int64_t I)
      : wanted(wanted), H(H), u0(u0), nu(nu), I(I), ld(I + H), step(wanted ? 4 * nu * (I + H) : 1),
        total(wanted ? 4 * nu * (I + H) : 0) {
    std::fill(step.p, step.p + total.size(), 0.0f);
  }
  void end_steps() {
    for (size_t k = 0; k < total.size(); ++k) total[k] += step.p[k], step.p[k] = 0.0f;
  }
  void store(float* d_w_ih, float* d_w_hh) {
    end_steps();
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t u = 0; u < nu; ++u) {
        const double* row = total.data() + (q * nu + u) * ld;
        std::copy(row, row + I, d_w_ih + (q * H + u0 + u) * I);
        std::copy(row + I, row + ld, d_w_hh + (q * H + u0 + u) * H);
      }
  }
};

// backward_tiled's thread body: dh of this thread's units is
// d_z (of the step visited after) @ w_hh[:, units], K = 4H, computed in
// blocks of 2W units, and the cell backward of the block runs on it.
template <typename Cell>
void backward_thread(const Steps& s, const float* d_y, const float* d_hn, const float* gates, const float* cs,
                     const float* c0, const float* w_hh, int64_t H, const StepGrads& out, float* dc_run,
                     float* d_b, int tid, int nt, Team& team) {
  const int64_t G = 4 * H, P = H, W = 2 * tile_width(), I = out.I;
  const bool fused = out.d_z == nullptr;
  auto [u0, u1] = columns(H, tid, nt);
  auto [i0, i1] = columns(fused && out.d_x ? I : 0, tid, nt);  // this thread's columns of d_x
  const int64_t nu = u1 - u0, blocks = (nu + W - 1) / W, x_blocks = (i1 - i0 + W - 1) / W;
  std::unique_ptr<ColumnSums<float>> sums_;
  std::unique_ptr<WeightSums> weights_;
  std::unique_ptr<Scratch> panel_, panel_x_, tile_;
  bool ok = true;
  try {
    sums_ = std::make_unique<ColumnSums<float>>(H, u0, nu);
    weights_ = std::make_unique<WeightSums>(fused && out.d_w_ih, H, u0, nu, I);
    panel_ = std::make_unique<Scratch>(blocks * G * W);
    panel_x_ = std::make_unique<Scratch>(x_blocks * G * W + 1);
    tile_ = std::make_unique<Scratch>((blocks + 1) * s.B * W);  // one dh tile per unit block, one for d_x
  } catch (...) {
    ok = false;
  }
  if (!team.all_allocated(ok, nt)) return;
  ColumnSums<float>& sums = *sums_;
  WeightSums& weights = *weights_;
  Scratch &panel = *panel_, &panel_x = *panel_x_, &tile = *tile_;
  pack_column_panels(w_hh, G, P, u0, u1, W, panel.p);
  pack_column_panels(out.w_ih, G, I, i0, i1, W, panel_x.p);
  // Rows of d_z of the i-th step visited.
  auto d_z_of = [&](int64_t i) { return fused ? out.z_steps + (i & 1) * s.B * G : out.d_z + s.offset[s.order[i]] * G; };
  // The products that need every column of the i-th step's d_z (all threads'),
  // run once the step after it in this loop has begun: dh for the step
  // before it (rows < carried, into tile) and d_h0 (rows it started), and d_x.
  auto products_of = [&](int64_t i, int64_t carried) {
    const int64_t b = s.size[s.order[i]], rows = fused ? b : carried;
    const float* d_z = d_z_of(i);
    for (int64_t ub = 0; ub < blocks; ++ub) {
      const int64_t u = u0 + ub * W, n = std::min(W, u1 - u);
      float* to = tile.p + ub * s.B * W;
      tile_product(rows, 2, to, G, d_z, G, panel.p + ub * G * W, 0, nullptr, 0, nullptr);
      for (int64_t r = carried; r < rows; ++r) std::copy(to + r * W, to + r * W + n, out.d_h0 + r * P + u);
    }
    if (!fused || !out.d_x) return;
    float* scratch = tile.p + blocks * s.B * W;
    for (int64_t jb = 0; jb < x_blocks; ++jb) {
      const int64_t j = i0 + jb * W, n = std::min(W, i1 - j);
      tile_product(b, 2, scratch, G, d_z, G, panel_x.p + jb * G * W, 0, nullptr, 0, nullptr);
      float* d_x = out.d_x + s.offset[s.order[i]] * I + j;
      for (int64_t r = 0; r < b; ++r) std::copy(scratch + r * W, scratch + r * W + n, d_x + r * I);
    }
  };
  for (int64_t i = s.T - 1; i >= 0; --i) {  // steps in reverse of the forward order
    const int64_t t = s.order[i], b = s.size[t], row0 = s.offset[t];
    const int64_t carried = i == s.T - 1 ? 0 : std::min(b, s.size_at(i + 1));
    if (i < s.T - 1) products_of(i + 1, carried);
    const int64_t prev = i == 0 ? -1 : s.order[i - 1];  // step before, in forward order
    const int64_t prev_b = prev < 0 ? 0 : s.size[prev];
    float* d_z = d_z_of(i);
    for (int64_t ub = 0; ub < blocks; ++ub) {
      const int64_t u = u0 + ub * W, n = std::min(W, u1 - u);
      const float* dh_tile = tile.p + ub * s.B * W;
      for (int64_t r = 0; r < b; ++r) {
        const int64_t row = row0 + r;
        const float* c_prev = r < prev_b ? cs + (s.offset[prev] + r) * H : c0 + r * H;
        // dm = d_y + dh; dh carried from the step after, or d_hn where the sequence ends.
        const float* dh = r < carried ? dh_tile + r * W : d_hn + r * P + u;
        cell_backward<Cell>(n, CellBackward<float>{gates + row * G + u, H, cs + row * H + u, c_prev + u,
                                                   d_y + row * P + u, dh, dc_run + r * H + u, d_z + r * G + u});
        sums.add(d_z + r * G, u - u0, n);
      }
    }
    sums.end_step();
    if (weights.wanted) {  // dW of this thread's gate rows: this step's d_z^T (x | h_prev)
      const int64_t ran = std::min(b, prev_b);  // rows whose h_prev is the previous step's output
      for (int64_t q = 0; q < 4 && nu > 0; ++q) {
        const float* a = d_z + q * H + u0;
        float* d_w = weights.step.p + q * nu * weights.ld;
        outer_product_add(nu, I, b, a, G, out.x + row0 * I, I, d_w, weights.ld);
        if (ran > 0) outer_product_add(nu, P, ran, a, G, out.y + s.offset[prev] * P, P, d_w + I, weights.ld);
        outer_product_add(nu, P, b - ran, a + ran * G, G, out.h0 + ran * P, P, d_w + I, weights.ld);
      }
      if (i % kStepsPerSum == 0) weights.end_steps();
    }
    barrier(nt);
  }
  if (fused) products_of(0, 0);
  sums.store(d_b);
  if (weights.wanted) weights.store(out.d_w_ih, out.d_w_hh);
}

}  // namespace

template <typename Cell>
void forward_tiled(const Steps& s, const StepInput& in, const float* h0, const float* w_hh, int64_t H, float* y,
                   float* gates, float* cs, float* c_run, int threads) {
  run_parallel(threads, [&](int tid, int nt, Team& team) {
    forward_thread<Cell>(s, in, h0, w_hh, H, y, gates, cs, c_run, tid, nt, team);
  });
}

template <typename Cell>
void backward_tiled(const Steps& s, const float* d_y, const float* d_hn, const float* gates, const float* cs,
                    const float* c0, const float* w_hh, int64_t H, const StepGrads& out, float* dc_run, float* d_b,
                    int threads) {
  run_parallel(threads, [&](int tid, int nt, Team& team) {
    backward_thread<Cell>(s, d_y, d_hn, gates, cs, c0, w_hh, H, out, dc_run, d_b, tid, nt, team);
  });
}

#define LSTM_TILED_LOOPS(Cell)                                                                                     \
  template void forward_tiled<Cell>(const Steps&, const StepInput&, const float*, const float*, int64_t, float*, \
                                    float*, float*, float*, int);                                                  \
  template void backward_tiled<Cell>(const Steps&, const float*, const float*, const float*, const float*,       \
                                     const float*, const float*, int64_t, const StepGrads&, float*, float*, int);
LSTM_CELL_KINDS(LSTM_TILED_LOOPS)

}  // namespace lstm_native
