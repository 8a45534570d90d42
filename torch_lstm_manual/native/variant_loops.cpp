// The loops of the LSTM variants, split by rows: see variant_loops.h.

#include "variant_loops.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "blas.h"
#include "parallel.h"

namespace lstm_native {

namespace {

// Thread `tid` of `nt`'s rows [lo, hi) of B.
std::pair<int64_t, int64_t> rows_of(int64_t B, int tid, int nt) { return {B * tid / nt, B * (tid + 1) / nt}; }

// Threads for a batch of B rows: as the plain loops (threads_for), at most one per row.
int variant_threads(int64_t B, int64_t H, int64_t P) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads_for(B, H, P), B)));
}

// Per-thread sums over the rows of a step, in T, added into double once per step.
template <typename T>
struct RowSums {
  std::vector<T> step;
  std::vector<double> total;
  explicit RowSums(int64_t n) : step(n), total(n) {}
  T* data() { return step.empty() ? nullptr : step.data(); }
  void end_step() {
    for (size_t k = 0; k < step.size(); ++k) total[k] += step[k], step[k] = T(0);
  }
};

template <typename T>
void allocate(std::vector<T>& v, int64_t n, bool& ok) {
  try {
    v.assign(static_cast<size_t>(std::max<int64_t>(n, 1)), T(0));
  } catch (...) {
    ok = false;
  }
}

}  // namespace

template <typename T>
void forward_variant(const Steps& s, const StepRange& range, const T* xw, const T* h0, const T* w_hh, const T* w_hr,
                     int64_t P, const VariantWeights<T>& w, const VariantMasks<T>& masks, T* y, T* gates, T* cs,
                     T* r_hat, T* r_rstd, T* c_run) {
  const int64_t H = w.H, G = 4 * H, row0 = range.row0, mask0 = masks.row0;
  run_parallel(variant_threads(s.B, H, P), [&](int tid, int nt, Team& team) {
    auto [r0, r1] = rows_of(s.B, tid, nt);
    const int64_t R = r1 - r0;
    std::vector<T> r_s, gate_s, ct, m_s, hr_s;
    bool ok = true;
    allocate(r_s, R * G, ok), allocate(gate_s, G, ok), allocate(ct, H, ok);
    allocate(m_s, w_hr ? R * H : 0, ok), allocate(hr_s, masks.recurrent ? R * P : 0, ok);
    if (!team.all_allocated(ok, nt)) return;
    T rstd_s = 0;
    for (int64_t i = range.begin; i < range.end; ++i) {
      const int64_t t = s.order[i], b = s.size[t], off = s.offset[t];
      const int64_t lo = r0, hi = std::min(r1, b), n = hi - lo;
      if (n <= 0) continue;
      const int64_t ran = i == 0 ? 0 : std::min(b, s.size_at(i - 1));  // rows that ran the step before
      const int64_t prev_off = i == 0 ? 0 : s.offset[s.order[i - 1]];
      auto h_prev = [&](int64_t r) { return r < ran ? y + (prev_off + r) * P : h0 + r * P; };
      // r (n, G) = (h_prev * m_rec) @ w_hh^T; with layer norm and save, straight into r_hat.
      T* r = w.ln_hh && r_hat ? r_hat + (off + lo - row0) * G : r_s.data();
      if (masks.recurrent) {
        for (int64_t k = 0; k < n; ++k) {
          const T *h = h_prev(lo + k), *mask = masks.recurrent + (lo + k) * P;
          T* to = hr_s.data() + k * P;
          for (int64_t p = 0; p < P; ++p) to[p] = h[p] * mask[p];
        }
        gemm<T>(true, n, G, P, hr_s.data(), P, w_hh, P, T(0), r, G);
      } else {
        const int64_t a = std::min(std::max(ran, lo), hi);  // rows [lo, a) ran the step before
        gemm<T>(true, a - lo, G, P, y + (prev_off + lo) * P, P, w_hh, P, T(0), r, G);
        gemm<T>(true, hi - a, G, P, h0 + a * P, P, w_hh, P, T(0), r + (a - lo) * G, G);
      }
      for (int64_t k = 0; k < n; ++k) {
        const int64_t rr = lo + k, row = off + rr;
        VariantForward<T> a{nullptr,
                            xw + (row - row0) * G,
                            c_run + rr * H,
                            masks.cell ? masks.cell + (row - mask0) * H : nullptr,
                            gates ? gates + row * G : gate_s.data(),
                            ct.data(),
                            c_run + rr * H,
                            cs ? cs + row * H : nullptr,
                            w_hr ? m_s.data() + k * H : y + row * P,
                            T(0),
                            T(0)};
        VariantCell::forward_row(w, a, r + k * G, r_rstd ? r_rstd + row - row0 : &rstd_s);
      }
      if (w_hr) gemm<T>(true, n, P, H, m_s.data(), H, w_hr, H, T(0), y + (off + lo) * P, P);
      if (masks.hidden)  // h = d_h h_prev + (1 - d_h) h̃
        for (int64_t k = 0; k < n; ++k) {
          const int64_t row = off + lo + k;
          const T *h = h_prev(lo + k), *d = masks.hidden + (row - mask0) * P;
          T* out = y + row * P;
          for (int64_t p = 0; p < P; ++p) out[p] = d[p] * h[p] + (T(1) - d[p]) * out[p];
        }
    }
  });
}

template <typename T>
VariantSums::VariantSums(const VariantWeights<T>& w) {
  H = w.H;
  const int64_t G = 4 * H;
  int64_t n = G;
  at_ln_hh = w.ln_hh ? std::exchange(n, n + G) : -1;
  at_ln_c = w.ln_c ? std::exchange(n, n + 2 * H) : -1;
  at_peep = w.peephole ? std::exchange(n, n + 3 * H) : -1;
  total.assign(n, 0.0);
}

template <typename T>
void VariantSums::store(T* d_b, T* d_ln_hh, T* d_ln_c, T* d_ln_c_bias, T* d_peephole) const {
  auto put = [&](T* to, int64_t from, int64_t n) {
    for (int64_t k = 0; k < n; ++k) to[k] = static_cast<T>(total[from + k]);
  };
  const int64_t G = 4 * H;
  put(d_b, 0, G);
  if (at_ln_hh >= 0) put(d_ln_hh, at_ln_hh, G);
  if (at_ln_c >= 0) put(d_ln_c, at_ln_c, H), put(d_ln_c_bias, at_ln_c + H, H);
  if (at_peep >= 0) put(d_peephole, at_peep, 3 * H);
}

template <typename T>
void backward_variant(const Steps& s, const StepRange& range, const T* d_y, const T* gates, const T* cs, const T* c0,
                      const T* r_hat, const T* r_rstd, const T* w_hh, const T* w_hr, int64_t P,
                      const VariantWeights<T>& w, const VariantMasks<T>& masks, T* d_z, T* d_r, T* d_h, T* dh_run,
                      T* dc_run, VariantSums& sums_out) {
  const int64_t H = w.H, G = 4 * H, row0 = range.row0, mask0 = masks.row0;
  const bool norm = w.ln_hh != nullptr, norm_c = w.ln_c != nullptr, peep = w.peephole != nullptr;
  const int threads = variant_threads(s.B, H, P);
  const int64_t n_sums = static_cast<int64_t>(sums_out.total.size());
  std::vector<std::vector<double>> totals(threads);
  run_parallel(threads, [&](int tid, int nt, Team& team) {
    auto [r0, r1] = rows_of(s.B, tid, nt);
    const int64_t R = r1 - r0;
    std::vector<T> dm_s, dir_h, ct, du;
    std::unique_ptr<RowSums<T>> sums_;
    bool ok = true;
    allocate(dm_s, R * H, ok), allocate(dir_h, masks.hidden ? R * P : 0, ok);
    allocate(ct, H, ok), allocate(du, H, ok);
    try {
      sums_ = std::make_unique<RowSums<T>>(n_sums);
    } catch (...) {
      ok = false;
    }
    if (!team.all_allocated(ok, nt)) return;
    RowSums<T>& sums = *sums_;
    T* acc = sums.data();
    T *acc_ln_hh = norm ? acc + sums_out.at_ln_hh : nullptr, *acc_ln_c = norm_c ? acc + sums_out.at_ln_c : nullptr;
    T *acc_ln_c_b = norm_c ? acc + sums_out.at_ln_c + H : nullptr, *acc_peep = peep ? acc + sums_out.at_peep : nullptr;
    for (int64_t i = range.end - 1; i >= range.begin; --i) {  // steps in reverse of the forward order
      const int64_t t = s.order[i], b = s.size[t], off = s.offset[t];
      const int64_t lo = r0, hi = std::min(r1, b), n = hi - lo;
      if (n <= 0) continue;
      const int64_t prev = i == 0 ? -1 : s.order[i - 1];  // step before, in forward order
      const int64_t prev_b = prev < 0 ? 0 : s.size[prev];
      // dh = d_y + the carried dh; zoneout: dh̃ = dh (1 - d_h) (into d_h, or dm without a
      // projection) and the direct part dh d_h.
      for (int64_t k = 0; k < n; ++k) {
        const int64_t rr = lo + k, row = off + rr;
        const T *dy = d_y + row * P, *carried = dh_run + rr * P;
        T* to = w_hr ? d_h + row * P : dm_s.data() + k * H;
        if (masks.hidden) {
          const T* d = masks.hidden + (row - mask0) * P;
          T* direct = dir_h.data() + k * P;
          for (int64_t p = 0; p < P; ++p) {
            const T dh = dy[p] + carried[p];
            to[p] = dh * (T(1) - d[p]), direct[p] = dh * d[p];
          }
        } else {
          for (int64_t p = 0; p < P; ++p) to[p] = dy[p] + carried[p];
        }
      }
      if (w_hr) gemm<T>(false, n, H, P, d_h + (off + lo) * P, P, w_hr, H, T(0), dm_s.data(), H);  // dm = dh̃ w_hr
      for (int64_t k = 0; k < n; ++k) {
        const int64_t rr = lo + k, row = off + rr;
        const T* c_prev = rr < prev_b ? cs + (s.offset[prev] + rr) * H : c0 + rr * H;
        VariantBackward<T> a{gates + row * G,
                             c_prev,
                             dm_s.data() + k * H,
                             masks.cell ? masks.cell + (row - mask0) * H : nullptr,
                             norm ? r_hat + (row - row0) * G : nullptr,
                             ct.data(),
                             du.data(),
                             dc_run + rr * H,
                             d_z + (row - row0) * G,
                             norm ? d_r + (row - row0) * G : nullptr,
                             T(0), T(0), T(0), T(0),
                             norm ? r_rstd[row - row0] : T(0), T(0), T(0),
                             acc, acc_ln_hh, acc_ln_c, acc_ln_c_b, acc_peep};
        VariantCell::backward_row(w, a);
      }
      sums.end_step();
      // The carried dh of the step before: (dR w_hh) * m_rec + the direct part.
      const T* d_rows = (norm ? d_r : d_z) + (off + lo - row0) * G;
      gemm<T>(false, n, P, G, d_rows, G, w_hh, P, T(0), dh_run + lo * P, P);
      if (masks.recurrent || masks.hidden)
        for (int64_t k = 0; k < n; ++k) {
          T* dh = dh_run + (lo + k) * P;
          if (masks.recurrent) {
            const T* mask = masks.recurrent + (lo + k) * P;
            for (int64_t p = 0; p < P; ++p) dh[p] *= mask[p];
          }
          if (masks.hidden) {
            const T* direct = dir_h.data() + k * P;
            for (int64_t p = 0; p < P; ++p) dh[p] += direct[p];
          }
        }
    }
    totals[tid] = std::move(sums.total);
  });
  std::vector<double> sum(n_sums, 0.0);  // this call's, over the threads in order, then into the pass's
  for (const auto& part : totals)
    for (size_t k = 0; k < part.size(); ++k) sum[k] += part[k];
  for (int64_t k = 0; k < n_sums; ++k) sums_out.total[k] += sum[k];
}

namespace {

// Threads for N rows of n units: one per 64 k entries, as at::parallel_for's grain.
int row_threads(int64_t N, int64_t n) {
  int nt = at::get_num_threads();
#ifndef _OPENMP
  nt = 1;
#endif
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, N * n / 65536)));
}

}  // namespace

template <typename T>
void normalize_rows(int64_t N, int64_t n, T* v, const T* gain, const T* bias) {
  run_parallel(row_threads(N, n), [&](int tid, int nt, Team&) {
    auto [r0, r1] = rows_of(N, tid, nt);
    for (int64_t r = r0; r < r1; ++r) VariantCell::norm_row(n, v + r * n, gain, bias);
  });
}

template <typename T>
void standardize_rows(int64_t N, int64_t n, T* v, T* rstd) {
  run_parallel(row_threads(N, n), [&](int tid, int nt, Team&) {
    auto [r0, r1] = rows_of(N, tid, nt);
    for (int64_t r = r0; r < r1; ++r) rstd[r] = VariantCell::standardize_row(n, v + r * n);
  });
}

template <typename T>
void d_normalize_rows(int64_t N, int64_t n, T* v, const T* d_z, const T* gain, T* d_gain) {
  const int threads = row_threads(N, n);
  std::vector<std::vector<double>> totals(threads);
  run_parallel(threads, [&](int tid, int nt, Team& team) {
    auto [r0, r1] = rows_of(N, tid, nt);
    std::unique_ptr<RowSums<T>> sums_;
    bool ok = true;
    try {
      sums_ = std::make_unique<RowSums<T>>(n);
    } catch (...) {
      ok = false;
    }
    if (!team.all_allocated(ok, nt)) return;
    RowSums<T>& sums = *sums_;
    for (int64_t r = r0; r < r1; ++r) {
      VariantCell::d_norm_row(n, v + r * n, d_z + r * n, gain, sums.data());
      if ((r - r0) % 64 == 63) sums.end_step();  // T sums of 64 rows at most
    }
    sums.end_step();
    totals[tid] = std::move(sums.total);
  });
  for (int64_t j = 0; j < n; ++j) {
    double total = 0;
    for (const auto& part : totals)
      if (!part.empty()) total += part[j];
    d_gain[j] = static_cast<T>(total);
  }
}

#define LSTM_VARIANT_LOOPS(T)                                                                                   \
  template void forward_variant<T>(const Steps&, const StepRange&, const T*, const T*, const T*, const T*, int64_t, \
                                   const VariantWeights<T>&, const VariantMasks<T>&, T*, T*, T*, T*, T*, T*);   \
  template void backward_variant<T>(const Steps&, const StepRange&, const T*, const T*, const T*, const T*,       \
                                    const T*, const T*, const T*, const T*, int64_t, const VariantWeights<T>&,    \
                                    const VariantMasks<T>&, T*, T*, T*, T*, T*, VariantSums&);                    \
  template VariantSums::VariantSums(const VariantWeights<T>&);                                                  \
  template void VariantSums::store<T>(T*, T*, T*, T*, T*) const;                                                \
  template void standardize_rows<T>(int64_t, int64_t, T*, T*);
LSTM_VARIANT_LOOPS(float)
LSTM_VARIANT_LOOPS(double)
template void normalize_rows<float>(int64_t, int64_t, float*, const float*, const float*);
template void normalize_rows<double>(int64_t, int64_t, double*, const double*, const double*);
template void d_normalize_rows<float>(int64_t, int64_t, float*, const float*, const float*, float*);
template void d_normalize_rows<double>(int64_t, int64_t, double*, const double*, const double*, double*);

}  // namespace lstm_native
