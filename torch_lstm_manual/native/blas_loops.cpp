// The loops with BLAS products (float64, a projection, or a build without
// vector instructions): see loops.h.

#include <algorithm>
#include <memory>

#include "blas.h"
#include "cell.h"
#include "loops.h"
#include "parallel.h"

namespace lstm_native {

template <typename Cell, typename T>
void forward_blas(const Steps& s, const T* xw, const T* h0, const T* w_hh, const T* w_hr, int64_t H,
                  int64_t P, T* y, T* gates, T* cs, T* c_run, T* z, T* m, T* w_perm) {
  const int64_t G = 4 * H;
  run_parallel(threads_for(s.B, H, P), [&](int tid, int nt, Team&) {
    auto [u0, u1] = columns(H, tid, nt);  // this thread's hidden units
    auto [p0, p1] = columns(P, tid, nt);  // and output columns (projection)
    const int64_t nu = u1 - u0;
    // This thread's gate rows i|f|g|o of its units, contiguous: (4 nu, P).
    T* w_blk = w_perm + 4 * u0 * P;
    for (int k = 0; k < 4; ++k)
      std::copy(w_hh + (k * H + u0) * P, w_hh + (k * H + u1) * P, w_blk + k * nu * P);
    for (int64_t i = 0; i < s.T; ++i) {
      const int64_t t = s.order[i], b = s.size[t], row0 = s.offset[t];
      const int64_t ran = i == 0 ? 0 : std::min(b, s.size_at(i - 1));  // rows that ran the step before
      // z (b, 4 nu) = h_prev @ w_blk^T: running rows from the previous output, new ones from h0.
      if (ran > 0)
        gemm<T>(true, ran, 4 * nu, P, y + s.offset[s.order[i - 1]] * P, P, w_blk, P, T(0), z + 4 * u0, G);
      gemm<T>(true, b - ran, 4 * nu, P, h0 + ran * P, P, w_blk, P, T(0), z + ran * G + 4 * u0, G);
      for (int64_t r = 0; r < b; ++r) {
        const int64_t row = row0 + r;
        T* out = w_hr ? m + r * H : y + row * P;  // (H,) of this row
        cell_forward<Cell>(nu, CellForward<T>{z + r * G + 4 * u0, nu, xw + row * G + u0, H, c_run + r * H + u0,
                                              out + u0, gates ? gates + row * G + u0 : nullptr,
                                              cs ? cs + row * H + u0 : nullptr});
      }
      if (w_hr) {  // y (b, P) = m @ w_hr^T, this thread's P columns
        barrier(nt);
        gemm<T>(true, b, p1 - p0, H, m, H, w_hr + p0 * H, H, T(0), y + row0 * P + p0, P);
      }
      barrier(nt);
    }
  });
}

template <typename Cell, typename T>
void backward_blas(const Steps& s, const T* d_y, const T* d_hn, const T* gates, const T* cs,
                   const T* c0, const T* w_hh, const T* w_hr, int64_t H, int64_t P, T* d_z, T* d_h,
                   T* dc_run, T* dh, T* dm, T* d_b) {
  const int64_t G = 4 * H;
  run_parallel(threads_for(s.B, H, P), [&](int tid, int nt, Team& team) {
    auto [u0, u1] = columns(H, tid, nt);
    auto [p0, p1] = columns(P, tid, nt);
    const int64_t nu = u1 - u0;
    std::unique_ptr<ColumnSums<T>> sums_;
    bool ok = true;
    try {
      sums_ = std::make_unique<ColumnSums<T>>(H, u0, nu);
    } catch (...) {
      ok = false;
    }
    if (!team.all_allocated(ok, nt)) return;
    ColumnSums<T>& sums = *sums_;
    for (int64_t i = s.T - 1; i >= 0; --i) {  // steps in reverse of the forward order
      const int64_t t = s.order[i], b = s.size[t], row0 = s.offset[t];
      const int64_t carried = i == s.T - 1 ? 0 : std::min(b, s.size_at(i + 1));
      // dh (b, P), this thread's columns: carried from the step visited after
      // (d_z_next @ w_hh), or d_hn for the sequences that end here.
      if (carried > 0)
        gemm<T>(false, carried, p1 - p0, G, d_z + s.offset[s.order[i + 1]] * G, G, w_hh + p0, P, T(0),
                dh + p0, P);
      for (int64_t r = carried; r < b; ++r)
        std::copy(d_hn + r * P + p0, d_hn + r * P + p1, dh + r * P + p0);
      const T* d_m = nullptr;  // (b, H): dm, with a projection
      if (w_hr) {
        for (int64_t r = 0; r < b; ++r)  // d_h = d_y + dh
          for (int64_t p = p0; p < p1; ++p) d_h[(row0 + r) * P + p] = d_y[(row0 + r) * P + p] + dh[r * P + p];
        barrier(nt);
        gemm<T>(false, b, nu, P, d_h + row0 * P, P, w_hr + u0, H, T(0), dm + u0, H);  // dm = d_h @ w_hr
        d_m = dm;
      }
      const int64_t prev = i == 0 ? -1 : s.order[i - 1];  // step before, in forward order
      const int64_t prev_b = prev < 0 ? 0 : s.size[prev];
      for (int64_t r = 0; r < b; ++r) {
        const int64_t row = row0 + r;
        const T* c_prev = r < prev_b ? cs + (s.offset[prev] + r) * H : c0 + r * H;
        const T* dm_a = d_m ? d_m + r * H : d_y + row * P;  // dm = dm_a + dm_b
        const T* dm_b = d_m ? nullptr : dh + r * P;
        cell_backward<Cell>(nu, CellBackward<T>{gates + row * G + u0, H, cs + row * H + u0, c_prev + u0, dm_a + u0,
                                                dm_b ? dm_b + u0 : nullptr, dc_run + r * H + u0,
                                                d_z + row * G + u0});
        sums.add(d_z + row * G, 0, nu);
      }
      sums.end_step();
      barrier(nt);
    }
    sums.store(d_b);
  });
}

#define LSTM_BLAS_LOOPS(Cell, T)                                                                                 \
  template void forward_blas<Cell, T>(const Steps&, const T*, const T*, const T*, const T*, int64_t, int64_t, T*, \
                                      T*, T*, T*, T*, T*, T*);                                                    \
  template void backward_blas<Cell, T>(const Steps&, const T*, const T*, const T*, const T*, const T*, const T*, \
                                       const T*, int64_t, int64_t, T*, T*, T*, T*, T*, T*);
#define LSTM_BLAS_LOOPS_OF(Cell) LSTM_BLAS_LOOPS(Cell, float) LSTM_BLAS_LOOPS(Cell, double)
LSTM_CELL_KINDS(LSTM_BLAS_LOOPS_OF)

}  // namespace lstm_native
