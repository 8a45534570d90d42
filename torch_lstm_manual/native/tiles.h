// The float32 products of the tiled loops on register tiles (tiles.cpp).

#pragma once

#include <cstdint>

namespace lstm_native {

// Floats per vector of the tiles: 16 (AVX-512), 8 (AVX2 and FMA), or 0 where
// the build has no vector instructions and the loops call BLAS instead.
int tile_width();

// c (rows, nv * tile_width()) = a1 (rows, K1; row stride lda1) @ panel1 (K1, nv * tile_width())
//                              + a2 (rows, K2; row stride lda2) @ panel2 (K2, nv * tile_width()),
// for nv = 2 or 4; K2 may be 0. Only called when tile_width() > 0.
void tile_product(int64_t rows, int nv, float* c, int64_t K1, const float* a1, int64_t lda1, const float* panel1,
                  int64_t K2, const float* a2, int64_t lda2, const float* panel2);

// c (M, n; row stride ldc) += a^T b for a (K, M; row stride lda) and b (K, n; row stride ldb).
void outer_product_add(int64_t M, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc);

}  // namespace lstm_native
