// The two LSTM time loops of torch_lstm_manual/functional.py, compiled.
//
// Same arguments and results as the Python reference `forward_loop` and
// `backward_loop`, which hold the math and the packed layout, plus the two
// passes LSTMFunction runs, `forward_input` (the input projection, then the
// forward loop) and `backward_input` (the backward loop, then its products);
// this file only changes how the work is laid out:
//
// * One parallel region for the whole loop. Thread k owns a slice of the
//   hidden units (columns): it computes the recurrent product for the four
//   gate rows of its units only, then the cell update of its units, and waits
//   at one barrier per step (two with a projection) for the others.
// * float32 without a projection, on AVX2 / AVX-512: every product of a step
//   on register tiles (tiles.cpp) over weights packed once per call, the gate
//   arithmetic on each tile while it is in L1. The forward pass adds the input
//   projection on the same tiles; the backward pass computes d_x, dW_ih, dW_hh
//   and d_h0 a step at a time, keeping the gate gradients of two steps only.
// * Otherwise (float64, a projection, no AVX2): BLAS (sgemm_/dgemm_ of the
//   BLAS torch links) for every per-step product, and the products over all
//   steps as single matrix products before and after the loop.
// * The gate arithmetic of a step is one fused pass over the rows; the
//   backward pass recomputes tanh(c) inline instead of keeping (N, H) factors.
// * Packed sequences: step t touches its batch_sizes[t] running rows only.
//
// Shapes: T, B, I, H, P (time, batch, input, hidden, projection), G = 4H,
// N = sum(batch_sizes); b is the rows of the current step.

#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using at::Tensor;

}  // namespace

// The fused gate arithmetic of one row and nu hidden units, in cells.cpp.
// Gate k of a row is at `gates + k * H` (and `xw + k * H`, `d_z + k * H`).
template <typename T>
void cell_forward(int64_t nu, const T* z, int64_t zs, const T* xw, int64_t H, T* c, T* m, T* gates, T* cs);

// The float32 recurrent product on register tiles, in tiles.cpp.
int tile_width();
void tile_product(int64_t rows, int nv, float* c, int64_t K1, const float* a1, int64_t lda1, const float* panel1,
                  int64_t K2, const float* a2, int64_t lda2, const float* panel2);
void outer_product_add(int64_t M, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc);
template <typename T>
void cell_backward(int64_t nu, const T* gates, int64_t H, const T* c, const T* c_prev, const T* dm_a,
                   const T* dm_b, T* dc, T* d_z);

namespace {

#ifdef LSTM_FORTRAN_BLAS
// The BLAS that torch links (MKL, OpenBLAS, ...), called directly: no tensor,
// no dispatch per product. 32-bit integers, as torch's own calls.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* al,
                      const float* a, const int* lda, const float* b, const int* ldb, const float* be, float* c,
                      const int* ldc) {
  sgemm_(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* al,
                      const double* a, const int* lda, const double* b, const int* ldb, const double* be,
                      double* c, const int* ldc) {
  dgemm_(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
#endif

// Row-major C (m, n) = A (m, k) @ op(B) + beta C; op(B) = B (k, n) or, with
// b_rows_are_n, B^T for a B stored (n, k).
template <typename T>
void gemm(bool b_rows_are_n, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
#ifdef LSTM_FORTRAN_BLAS
  // BLAS is column-major: compute C^T (n, m) = op(B)^T A^T.
  const int M = n, N = m, K = k, LDA = ldb, LDB = lda, LDC = ldc;
  const T one = 1;
  blas_gemm(b_rows_are_n ? "T" : "N", "N", &M, &N, &K, &one, b, &LDA, a, &LDB, &beta, c, &LDC);
#else
  // Without a BLAS symbol to call, through ATen (slower: a dispatch per product).
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  Tensor A = at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  Tensor Bm = b_rows_are_n ? at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opt).t()
                           : at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, opt);
  Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  if (beta == T(0)) at::mm_out(C, A, Bm); else C.addmm_(A, Bm, beta, 1);
#endif
}

#ifdef LSTM_MKL
extern "C" int MKL_Set_Num_Threads_Local(int);  // threads of MKL calls from this thread
#endif

// The packed layout: rows of step t are [offset[t], offset[t] + size[t]).
struct Steps {
  std::vector<int64_t> offset, size, order;  // order: steps in forward-loop order
  int64_t T, N, B;
  // Size of the step visited before / after `i`-th in `order` (0 if none).
  int64_t size_at(int64_t i) const { return i < 0 || i >= T ? 0 : size[order[i]]; }
};

Steps make_steps(const std::vector<int64_t>& batch_sizes, bool reverse) {
  Steps s;
  s.T = static_cast<int64_t>(batch_sizes.size());
  TORCH_CHECK(s.T > 0, "batch_sizes must not be empty");
  int64_t start = 0;
  for (int64_t t = 0; t < s.T; ++t) {
    int64_t b = batch_sizes[t];
    TORCH_CHECK(b > 0 && (t == 0 || b <= batch_sizes[t - 1]),
                "batch_sizes must be positive and non-increasing, got ", batch_sizes);
    s.offset.push_back(start);
    s.size.push_back(b);
    s.order.push_back(reverse ? s.T - 1 - t : t);
    start += b;
  }
  s.N = start;
  s.B = batch_sizes[0];
  return s;
}

// A contiguous range [lo, hi) of `n` columns for thread `tid` of `nt`, in
// multiples of 8 so that every thread but the last runs whole vectors.
std::pair<int64_t, int64_t> columns(int64_t n, int tid, int nt) {
  int64_t chunk = ((n + nt - 1) / nt + 7) / 8 * 8;
  int64_t lo = std::min(n, tid * chunk);
  return {lo, std::min(n, lo + chunk)};
}

// Threads for a step of b rows: one below ~0.5 MFLOP of recurrent product,
// where a barrier per step costs more than it saves.
int threads_for(int64_t b, int64_t H, int64_t P) {
  int nt = at::get_num_threads();
#ifndef _OPENMP
  nt = 1;
#endif
  if (b * 4 * H * P < (1 << 18)) nt = 1;
  return std::max(1, std::min<int>(nt, static_cast<int>((H + 7) / 8)));
}

inline void barrier(int nt) {
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp barrier
  }
#endif
}

// A thread body allocates its own memory at its start, inside the parallel
// region, where an exception would end the process. A thread whose
// allocation failed says so; after one barrier every thread knows, all of
// them leave, and run_parallel raises once the region is over.
struct Team {
  std::atomic<bool> failed{false};
  // Whether every thread of the team got its memory.
  bool all_allocated(bool ok, int nt) {
    if (!ok) failed = true;
    barrier(nt);
    return !failed;
  }
};

// Run body(tid, nt, team) on nt threads. Barriers inside body are `#pragma omp barrier`.
template <typename F>
void run_parallel(int nt, const F& body) {
  // Each thread makes its own, single-threaded BLAS calls.
  auto single_blas = [](const auto& f) {
#ifdef LSTM_MKL
    int previous = MKL_Set_Num_Threads_Local(1);
    f();
    MKL_Set_Num_Threads_Local(previous);
#else
    f();
#endif
  };
  Team team;
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    single_blas([&] { body(omp_get_thread_num(), omp_get_num_threads(), team); });
  } else
#endif
    single_blas([&] { body(0, 1, team); });
  TORCH_CHECK(!team.failed, "the native LSTM loops could not allocate their per-thread memory");
}

// 64-byte aligned float scratch, one per thread.
struct Scratch {
  float* p;
  explicit Scratch(int64_t n) : p(static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64 + 1) * 64))) {
    TORCH_CHECK(p, "out of memory for ", n, " floats of scratch");
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Whether the float32 loops without a projection run on tiles (tiles.cpp).
template <typename T>
bool tiled(const T* w_hr) {
  return std::is_same_v<T, float> && w_hr == nullptr && tile_width() > 0;
}

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

// forward_impl's thread body on tiles: for each block of W units, the step's
// product is a (b, 4W) tile, [i | f | g | o] of the block's units for every
// row, and the gates of the block run on it right away.
void forward_tiled(const Steps& s, const StepInput& in, const float* h0, const float* w_hh, int64_t H, float* y,
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
        cell_forward<float>(n, tile.p + r * 4 * W, W, add, H, c_run + r * H + u, y + row * P + u,
                            gates ? gates + row * G + u : nullptr, cs ? cs + row * H + u : nullptr);
      }
    }
    barrier(nt);
  }
}

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

// backward_impl's thread body on tiles: dh of this thread's units is
// d_z (of the step visited after) @ w_hh[:, units], K = 4H, computed in
// blocks of 2W units, and the cell backward of the block runs on it.
void backward_tiled(const Steps& s, const float* d_y, const float* d_hn, const float* gates, const float* cs,
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
        cell_backward<float>(n, gates + row * G + u, H, cs + row * H + u, c_prev + u, d_y + row * P + u, dh,
                             dc_run + r * H + u, d_z + r * G + u);
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

template <typename T>
void forward_impl(const Steps& s, const T* xw, const T* h0, const T* w_hh, const T* w_hr, int64_t H,
                  int64_t P, T* y, T* gates, T* cs, T* c_run, T* z, T* m, T* w_perm) {
  const int64_t G = 4 * H;
  run_parallel(threads_for(s.B, H, P), [&](int tid, int nt, Team& team) {
    if constexpr (std::is_same_v<T, float>)
      if (tiled(w_hr)) {
        const StepInput in{xw, nullptr, 0, nullptr, nullptr};
        return forward_tiled(s, in, h0, w_hh, H, y, gates, cs, c_run, tid, nt, team);
      }
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
        cell_forward<T>(nu, z + r * G + 4 * u0, nu, xw + row * G + u0, H, c_run + r * H + u0, out + u0,
                        gates ? gates + row * G + u0 : nullptr, cs ? cs + row * H + u0 : nullptr);
      }
      if (w_hr) {  // y (b, P) = m @ w_hr^T, this thread's P columns
        barrier(nt);
        gemm<T>(true, b, p1 - p0, H, m, H, w_hr + p0 * H, H, T(0), y + row0 * P + p0, P);
      }
      barrier(nt);
    }
  });
}

template <typename T>
void backward_impl(const Steps& s, const T* d_y, const T* d_hn, const T* gates, const T* cs,
                   const T* c0, const T* w_hh, const T* w_hr, int64_t H, int64_t P, T* d_z, T* d_h,
                   T* dc_run, T* dh, T* dm, T* d_b) {
  const int64_t G = 4 * H;
  run_parallel(threads_for(s.B, H, P), [&](int tid, int nt, Team& team) {
    if constexpr (std::is_same_v<T, float>)
      if (tiled(w_hr)) {
        const StepGrads out{d_z, nullptr, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
        return backward_tiled(s, d_y, d_hn, gates, cs, c0, w_hh, H, out, dc_run, d_b, tid, nt, team);
      }
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
        cell_backward<T>(nu, gates + row * G + u0, H, cs + row * H + u0, c_prev + u0, dm_a + u0,
                         dm_b ? dm_b + u0 : nullptr, dc_run + r * H + u0, d_z + row * G + u0);
        sums.add(d_z + row * G, 0, nu);
      }
      sums.end_step();
      barrier(nt);
    }
    sums.store(d_b);
  });
}

// n elements in pages of their own (mmap), outside the malloc heap, so that
// a buffer kept for long does not pin the heap that the rest of the
// program allocates from (which would then go back to the kernel and
// fault in again, step after step).
Tensor mapped_empty(int64_t n, const at::TensorOptions& options) {
#if defined(__unix__) || defined(__APPLE__)
  const size_t bytes = static_cast<size_t>(n) * options.dtype().itemsize();
  void* p = options.device().is_cpu() && bytes > 0
                ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : MAP_FAILED;
  if (p != MAP_FAILED) {
    try {
      return at::from_blob(p, {n}, [bytes](void* q) { munmap(q, bytes); }, options);
    } catch (...) {
      munmap(p, bytes);
      throw;
    }
  }
#endif
  return at::empty({n}, options);
}

// The (N, 4H) buffers of the loops, kept for the next call once nobody holds
// them: the gates saved for the backward pass, and, where the products run
// outside the loop, the input projections xw and d_z. Fresh memory of that
// size is zeroed and mapped page by page by the kernel on every call, a few ms
// per training step at T=200, B=64, H=128; a training loop asks for the same
// sizes every step. (cs, a quarter of the size, is not kept: held through a
// multi-layer backward it would raise the peak memory more than it saves.)
// A kept buffer is free when no tensor refers to its storage any more. A
// request takes the smallest free one of its dtype with room for it and at
// most 5/4 of its size; when none fits, the free ones are dropped (they did
// not fit) and a buffer of exactly the request is made. release() drops the
// free ones, for torch_lstm_manual.native.empty_cache().
class BufferCache {
 public:

  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t n = c10::multiply_integers(sizes);
    if (n * static_cast<int64_t>(options.dtype().itemsize()) < kMinBytes || !options.device().is_cpu())
      return at::empty(sizes, options);
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor* best = nullptr;
    for (const Tensor& kept : kept_)
      if (unused(kept) && kept.scalar_type() == c10::typeMetaToScalarType(options.dtype()) && kept.numel() >= n &&
          kept.numel() * 4 <= n * 5 && (!best || kept.numel() < best->numel()))
        best = &kept;
    if (!best) {
      drop_unused();
      kept_.push_back(mapped_empty(n, options));
      best = &kept_.back();
    }
    return at::empty({0}, options).set_(best->storage(), 0, sizes, c10::contiguous_strides(sizes));
  }

  // Drop the buffers nobody holds; returns how many bytes they had.
  int64_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    return drop_unused();
  }

 private:
  static constexpr int64_t kMinBytes = 1 << 20;
  static bool unused(const Tensor& t) { return t.storage().use_count() == 1; }
  int64_t drop_unused() {
    int64_t bytes = 0;
    for (const Tensor& kept : kept_)
      if (unused(kept)) bytes += static_cast<int64_t>(kept.nbytes());
    kept_.erase(std::remove_if(kept_.begin(), kept_.end(), unused), kept_.end());
    return bytes;
  }
  std::mutex mutex_;
  std::vector<Tensor> kept_;
};

// Never destroyed: at exit, tensors must not be freed after the libraries and
// the interpreter they belong to have shut down; the kernel takes the pages back.
BufferCache& buffers() {
  static BufferCache* cache = new BufferCache();
  return *cache;
}

void check(const Tensor& t, const char* name, int64_t rows, int64_t cols, const Tensor& like) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, name, " must be (", rows, ", ",
              cols, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device().is_cpu(), name,
              " must be a CPU tensor of dtype ", like.scalar_type(), ", got ", t.scalar_type(), " on ",
              t.device());
}

// The first tensor of a call, which the others must match: a 2-d float32 or
// float64 CPU tensor.
void check_input(const Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-dimensional, got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble), name,
              " must be a float32 or float64 CPU tensor, got ", t.scalar_type(), " on ", t.device());
}

void check_vector(const Tensor& t, const char* name, int64_t n, const Tensor& like) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must be (", n, ",), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device().is_cpu(), name,
              " must be a CPU tensor of dtype ", like.scalar_type(), ", got ", t.scalar_type(), " on ", t.device());
}

Tensor optional_ptr_check(const c10::optional<Tensor>& w_hr, int64_t H, const Tensor& like, int64_t& P) {
  if (!w_hr.has_value() || !w_hr->defined()) return Tensor();
  P = w_hr->size(0);
  check(*w_hr, "w_hr", P, H, like);
  return w_hr->contiguous();
}

// h_n rows: each sequence's output at the last step that ran it.
Tensor final_outputs(const Steps& s, const Tensor& y) {
  auto h_n = at::empty({s.B, y.size(1)}, y.options());
  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.order[i], next = s.size_at(i + 1);
    if (s.size[t] > next)
      h_n.narrow(0, next, s.size[t] - next).copy_(y.narrow(0, s.offset[t] + next, s.size[t] - next));
  }
  return h_n;
}

// What a forward loop returns: y (N, P), and with `save` the gates (N, 4H,
// a kept buffer) and cell states (N, H); c_n starts as c0 and is updated in
// place. results() adds h_n.
struct ForwardOutputs {
  Tensor y, gates, cs, c_n;
  ForwardOutputs(const Steps& s, int64_t H, int64_t P, const Tensor& c0, bool save, const at::TensorOptions& opt)
      : y(at::empty({s.N, P}, opt)),
        gates(save ? buffers().empty({s.N, 4 * H}, opt) : Tensor()),
        cs(save ? at::empty({s.N, H}, opt) : Tensor()),
        c_n(c0.contiguous().clone()) {}
  std::vector<Tensor> results(const Steps& s) const { return {y, gates, cs, final_outputs(s, y), c_n}; }
};

std::vector<Tensor> forward(const Tensor& xw_, const Tensor& h0_, const Tensor& c0, const Tensor& w_hh_,
                            const c10::optional<Tensor>& w_hr_, const std::vector<int64_t>& batch_sizes,
                            bool reverse, bool save) {
  c10::AutoGradMode no_grad(false);  // plain buffers: nothing here is recorded
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(xw_, "xw");
  TORCH_CHECK(c0.dim() == 2, "c0 must be (B, H), got ", c0.sizes());
  const int64_t H = c0.size(1);
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, xw_, P);
  check(xw_, "xw", s.N, 4 * H, xw_), check(h0_, "h0", s.B, P, xw_), check(c0, "c0", s.B, H, xw_);
  check(w_hh_, "w_hh", 4 * H, P, xw_);
  Tensor xw = xw_.contiguous(), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  auto opt = xw.options();
  ForwardOutputs out(s, H, P, c0, save, opt);
  Tensor z = at::empty({s.B, 4 * H}, opt), w_perm = at::empty({4 * H, P}, opt);
  Tensor m = w_hr.defined() ? at::empty({s.B, H}, opt) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward_loop", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    forward_impl<scalar_t>(s, ptr(xw), ptr(h0), ptr(w_hh), ptr(w_hr), H, P, ptr(out.y), ptr(out.gates),
                           ptr(out.cs), ptr(out.c_n), ptr(z), ptr(m), ptr(w_perm));
  });
  return out.results(s);
}

std::vector<Tensor> backward(const Tensor& d_y_, const Tensor& d_hn_, const Tensor& d_cn, const Tensor& gates_,
                             const Tensor& cs_, const Tensor& c0_, const Tensor& w_hh_,
                             const c10::optional<Tensor>& w_hr_, const std::vector<int64_t>& batch_sizes,
                             bool reverse) {
  c10::AutoGradMode no_grad(false);  // plain buffers: nothing here is recorded
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(gates_, "gates");
  TORCH_CHECK(cs_.dim() == 2, "cs must be (N, H), got ", cs_.sizes());
  const int64_t H = cs_.size(1);
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, gates_, P);
  check(d_y_, "d_y", s.N, P, gates_), check(d_hn_, "d_hn", s.B, P, gates_), check(d_cn, "d_cn", s.B, H, gates_);
  check(gates_, "gates", s.N, 4 * H, gates_), check(cs_, "cs", s.N, H, gates_), check(c0_, "c0", s.B, H, gates_);
  check(w_hh_, "w_hh", 4 * H, P, gates_);
  Tensor d_y = d_y_.contiguous(), d_hn = d_hn_.contiguous(), gates = gates_.contiguous(), cs = cs_.contiguous();
  Tensor c0 = c0_.contiguous(), w_hh = w_hh_.contiguous();
  auto opt = gates.options();
  Tensor d_z = buffers().empty({s.N, 4 * H}, opt), d_c0 = d_cn.contiguous().clone();
  Tensor d_h = w_hr.defined() ? at::empty({s.N, P}, opt) : Tensor();
  Tensor dh = at::empty({s.B, P}, opt), dm = w_hr.defined() ? at::empty({s.B, H}, opt) : Tensor();
  Tensor d_b = at::empty({4 * H}, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward_loop", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    backward_impl<scalar_t>(s, ptr(d_y), ptr(d_hn), ptr(gates), ptr(cs), ptr(c0), ptr(w_hh), ptr(w_hr), H, P,
                            ptr(d_z), ptr(d_h), ptr(d_c0), ptr(dh), ptr(dm), ptr(d_b));
  });
  // d_h0: the rows of each step whose sequences start there, through w_hh.
  Tensor d_h0 = at::empty({s.B, P}, opt);
  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.order[i], before = std::min(s.size[t], s.size_at(i - 1));
    if (s.size[t] > before) {
      Tensor rows = d_h0.narrow(0, before, s.size[t] - before);  // (b_new, P)
      at::mm_out(rows, d_z.narrow(0, s.offset[t] + before, s.size[t] - before), w_hh);
    }
  }
  return {d_z, d_h, d_h0, d_c0, d_b};
}

// xw = rows @ w_ih^T + bias, (N, G), into a kept buffer.
Tensor project(const Tensor& rows, const Tensor& w_ih, const c10::optional<Tensor>& bias) {
  c10::AutoGradMode no_grad(false);
  check_input(rows, "rows");
  TORCH_CHECK(w_ih.dim() == 2, "w_ih must be (4H, I), got ", w_ih.sizes());
  check(w_ih, "w_ih", w_ih.size(0), rows.size(1), rows);
  if (bias.has_value() && bias->defined()) check_vector(*bias, "bias", w_ih.size(0), rows);
  Tensor xw = buffers().empty({rows.size(0), w_ih.size(0)}, rows.options());
  if (bias.has_value() && bias->defined())
    at::addmm_out(xw, *bias, rows, w_ih.t());
  else
    at::mm_out(xw, rows, w_ih.t());
  return xw;
}

// forward(project(x, w_ih, bias), ...). On the float32 tiles without a
// projection, x @ w_ih^T is added on the tiles of each step instead, so that
// the (N, 4H) projections never go through memory.
std::vector<Tensor> forward_input(const Tensor& x_, const Tensor& w_ih_, const c10::optional<Tensor>& bias_,
                                  const Tensor& h0_, const Tensor& c0_, const Tensor& w_hh_,
                                  const c10::optional<Tensor>& w_hr, const std::vector<int64_t>& batch_sizes,
                                  bool reverse, bool save) {
  c10::AutoGradMode no_grad(false);
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(x_, "x");
  TORCH_CHECK(c0_.dim() == 2, "c0 must be (B, H), got ", c0_.sizes());
  const int64_t H = c0_.size(1), G = 4 * H, I = x_.size(1);
  check(x_, "x", s.N, I, x_), check(w_ih_, "w_ih", G, I, x_);
  const bool has_bias = bias_.has_value() && bias_->defined();
  if (has_bias) check_vector(*bias_, "bias", G, x_);
  const bool projected = w_hr.has_value() && w_hr->defined();
  if (x_.scalar_type() != at::kFloat || projected || tile_width() == 0)
    return forward(project(x_, w_ih_, bias_), h0_, c0_, w_hh_, w_hr, batch_sizes, reverse, save);
  check(h0_, "h0", s.B, H, x_), check(c0_, "c0", s.B, H, x_), check(w_hh_, "w_hh", G, H, x_);
  Tensor bias = has_bias ? bias_->contiguous() : at::zeros({G}, x_.options());
  Tensor x = x_.contiguous(), w_ih = w_ih_.contiguous(), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  auto opt = x.options();
  ForwardOutputs out(s, H, H, c0_, save, opt);
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  const StepInput in{nullptr, ptr(x), I, ptr(w_ih), ptr(bias)};
  run_parallel(threads_for(s.B, H, H + I), [&](int tid, int nt, Team& team) {
    forward_tiled(s, in, ptr(h0), ptr(w_hh), H, ptr(out.y), ptr(out.gates), ptr(out.cs), ptr(out.c_n), tid, nt, team);
  });
  return out.results(s);
}

// Whether backward_input runs the products of the backward pass inside the loop.
bool fuses_backward(const Tensor& gates, const c10::optional<Tensor>& w_hr) {
  return gates.scalar_type() == at::kFloat && !(w_hr.has_value() && w_hr->defined()) && tile_width() > 0;
}

// The backward pass with its products, float32 on tiles without a projection
// (fuses_backward): (d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b), d_x / the weight
// gradients undefined where not needed; see StepGrads.
std::vector<Tensor> backward_input(const Tensor& d_y_, const Tensor& d_hn_, const Tensor& d_cn, const Tensor& gates_,
                                   const Tensor& cs_, const Tensor& c0_, const Tensor& w_hh_, const Tensor& x_,
                                   const Tensor& w_ih_, const Tensor& y_, const Tensor& h0_,
                                   const std::vector<int64_t>& batch_sizes, bool reverse, bool need_x,
                                   bool need_weights) {
  c10::AutoGradMode no_grad(false);
  TORCH_CHECK(fuses_backward(gates_, c10::nullopt), "backward_input runs float32 on the tiled loops only");
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(x_, "x");
  TORCH_CHECK(cs_.dim() == 2, "cs must be (N, H), got ", cs_.sizes());
  const int64_t H = cs_.size(1), G = 4 * H, I = x_.size(1);
  check(d_y_, "d_y", s.N, H, gates_), check(d_hn_, "d_hn", s.B, H, gates_), check(d_cn, "d_cn", s.B, H, gates_);
  check(gates_, "gates", s.N, G, gates_), check(cs_, "cs", s.N, H, gates_), check(c0_, "c0", s.B, H, gates_);
  check(w_hh_, "w_hh", G, H, gates_), check(x_, "x", s.N, I, gates_), check(w_ih_, "w_ih", G, I, gates_);
  check(y_, "y", s.N, H, gates_), check(h0_, "h0", s.B, H, gates_);
  Tensor d_y = d_y_.contiguous(), d_hn = d_hn_.contiguous(), gates = gates_.contiguous(), cs = cs_.contiguous();
  Tensor c0 = c0_.contiguous(), w_hh = w_hh_.contiguous(), x = x_.contiguous(), w_ih = w_ih_.contiguous();
  Tensor y = y_.contiguous(), h0 = h0_.contiguous();
  auto opt = gates.options();
  Tensor z_steps = at::empty({2, s.B, G}, opt), d_c0 = d_cn.contiguous().clone(), d_h0 = at::empty({s.B, H}, opt);
  Tensor d_x = need_x ? at::empty({s.N, I}, opt) : Tensor(), d_b = at::empty({G}, opt);
  Tensor d_w_ih = need_weights ? at::empty({G, I}, opt) : Tensor();
  Tensor d_w_hh = need_weights ? at::empty({G, H}, opt) : Tensor();
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  const StepGrads out{nullptr, ptr(z_steps), ptr(x), I, ptr(w_ih), ptr(y), ptr(h0), ptr(d_x), ptr(d_w_ih),
                      ptr(d_w_hh), ptr(d_h0)};
  run_parallel(threads_for(s.B, H, H + I), [&](int tid, int nt, Team& team) {
    backward_tiled(s, ptr(d_y), ptr(d_hn), ptr(gates), ptr(cs), ptr(c0), ptr(w_hh), H, out, ptr(d_c0), ptr(d_b), tid,
                   nt, team);
  });
  return {d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "forward_loop: (y, gates, cs, h_n, c_n)", py::call_guard<py::gil_scoped_release>());
  m.def("release_buffers", [] { return buffers().release(); },
        "drop the kept buffers that no tensor holds; returns their bytes", py::call_guard<py::gil_scoped_release>());
  m.def("backward", &backward, "backward_loop: (d_z, d_h, d_h0, d_c0, d_b)",
        py::call_guard<py::gil_scoped_release>());
  m.def("forward_input", &forward_input, "input_projection, then forward_loop: (y, gates, cs, h_n, c_n)",
        py::call_guard<py::gil_scoped_release>());
  m.def("fuses_backward", &fuses_backward, "whether backward_input applies to these gates and w_hr");
  m.def("backward_input", &backward_input, "backward with its products: (d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b)",
        py::call_guard<py::gil_scoped_release>());
  m.def("project", &project, "input projection: rows @ w_ih^T + bias", py::call_guard<py::gil_scoped_release>());
}
