// The per-step products of the float32 loops in tiled_loops.cpp, written
// for the shapes it has: a few dozen rows, K = H or 4H, and a weight panel that
// stays the same for all T steps.
//
// The weights are packed once per call into panels: row k of a panel holds
// nv vectors of kWidth floats, contiguous, so that a tile of MR rows x nv
// vectors accumulates in registers over the whole K and is stored once. The
// loops then run the gate arithmetic on the stored tile while it is still in
// the L1 cache. Without vector instructions (kWidth = 0) the loops call
// BLAS instead (blas_loops.cpp).

#include <cstdint>

#include "tiles.h"

#if defined(__AVX512F__)
constexpr int kWidth = 16;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kWidth = 8;
#else
constexpr int kWidth = 0;
#endif

namespace {

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
typedef float Vec __attribute__((vector_size(kWidth * 4)));
typedef float Unaligned __attribute__((vector_size(kWidth * 4), aligned(4)));  // for loads and stores

inline Vec load(const float* p) { return *reinterpret_cast<const Unaligned*>(p); }

inline void store(float* p, Vec v) { *reinterpret_cast<Unaligned*>(p) = v; }

// Rows per tile: as many accumulators as the vector registers hold (32 with
// AVX-512, 16 with AVX2) with room for the panel row and a broadcast; with
// AVX2 and four vectors, 12 accumulators leave the panel row to the loads.
template <int NV>
constexpr int rows_per_tile() {
  if constexpr (kWidth == 16) return NV == 4 ? 6 : (NV == 2 ? 14 : 16);
  return NV == 4 ? 3 : 6;
}

// One product term: a (rows, K; row stride lda) @ panel (K, NV * kWidth).
struct Term {
  int64_t K;
  const float* a;
  int64_t lda;
  const float* panel;
};

template <int MR, int NV>
inline void accumulate(Vec (&acc)[MR][NV], const Term& term, int64_t r0) {
  const float* a = term.a + r0 * term.lda;
  for (int64_t k = 0; k < term.K; ++k) {
    Vec w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) w[v] = load(term.panel + (k * NV + v) * kWidth);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const float s = a[r * term.lda + k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += s * w[v];
    }
  }
}

// Rows r0 ... r0 + MR - 1 of c (rows, NV * kWidth) = first + second.
template <int MR, int NV>
void tile(const Term& first, const Term& second, int64_t r0, float* c) {
  Vec acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec{};
  accumulate<MR, NV>(acc, first, r0);
  accumulate<MR, NV>(acc, second, r0);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(c + ((r0 + r) * NV + v) * kWidth, acc[r][v]);
}

// The last rows (fewer than MR), with a tile of exactly that many rows.
template <int NV, int MR>
void tail(int64_t rows, const Term& first, const Term& second, int64_t r0, float* c) {
  if constexpr (MR > 0) {
    if (rows == MR) return tile<MR, NV>(first, second, r0, c);
    tail<NV, MR - 1>(rows, first, second, r0, c);
  }
}

template <int NV>
void product(int64_t rows, const Term& first, const Term& second, float* c) {
  constexpr int MR = rows_per_tile<NV>();
  int64_t r = 0;
  for (; r + MR <= rows; r += MR) tile<MR, NV>(first, second, r, c);
  if (r < rows) tail<NV, MR - 1>(rows - r, first, second, r, c);
}

// The weight gradients, a step at a time: c (M, n) += a^T b, where a is
// (K, M) (row stride lda: the step's rows of d_z, at a gate's columns) and b
// is (K, n) (row stride ldb: the step's inputs or previous outputs). A tile of
// MR rows x NV vectors of c is loaded, gets the K rows' products added in
// registers, and is stored back.
template <int MR, int NV>
void outer_tile(int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  Vec acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = load(c + r * ldc + v * kWidth);
  for (int64_t k = 0; k < K; ++k) {
    Vec w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) w[v] = load(b + k * ldb + v * kWidth);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const float s = a[k * lda + r];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += s * w[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(c + r * ldc + v * kWidth, acc[r][v]);
}

template <int NV, int MR>
void outer_tail(int64_t rows, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                int64_t ldc) {
  if constexpr (MR > 0) {
    if (rows == MR) return outer_tile<MR, NV>(K, a, lda, b, ldb, c, ldc);
    outer_tail<NV, MR - 1>(rows, K, a, lda, b, ldb, c, ldc);
  }
}

// Columns [0, NV * kWidth) of c for all M rows.
template <int NV>
void outer_columns(int64_t M, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc) {
  constexpr int MR = rows_per_tile<NV>();
  int64_t r = 0;
  for (; r + MR <= M; r += MR) outer_tile<MR, NV>(K, a + r, lda, b, ldb, c + r * ldc, ldc);
  if (r < M) outer_tail<NV, MR - 1>(M - r, K, a + r, lda, b, ldb, c + r * ldc, ldc);
}
#endif

}  // namespace

namespace lstm_native {

int tile_width() { return kWidth; }

void tile_product(int64_t rows, int nv, float* c, int64_t K1, const float* a1, int64_t lda1, const float* panel1,
                  int64_t K2, const float* a2, int64_t lda2, const float* panel2) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  if (rows <= 0) return;
  const Term first{K1, a1, lda1, panel1}, second{K2, a2, lda2, panel2};
  if (nv == 4) return product<4>(rows, first, second, c);
  product<2>(rows, first, second, c);
#else
  (void)rows, (void)nv, (void)c, (void)K1, (void)a1, (void)lda1, (void)panel1, (void)K2, (void)a2, (void)lda2,
      (void)panel2;
#endif
}

// 4-vector column blocks, then single vectors, then the last
// n mod tile_width() columns one by one.
void outer_product_add(int64_t M, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc) {
  int64_t j = 0;
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  if (M <= 0 || K <= 0) return;
  for (; j + 4 * kWidth <= n; j += 4 * kWidth) outer_columns<4>(M, K, a, lda, b + j, ldb, c + j, ldc);
  for (; j + kWidth <= n; j += kWidth) outer_columns<1>(M, K, a, lda, b + j, ldb, c + j, ldc);
#endif
  for (int64_t r = 0; r < M; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const float s = a[k * lda + r];
      for (int64_t jj = j; jj < n; ++jj) c[r * ldc + jj] += s * b[k * ldb + jj];
    }
}

}  // namespace lstm_native
