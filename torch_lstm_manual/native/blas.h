// Row-major matrix products of the BLAS loops (blas.cpp): the BLAS torch
// links, called directly where the build says it exports sgemm_/dgemm_
// (LSTM_FORTRAN_BLAS), else through ATen.

#pragma once

#include <cstdint>

namespace lstm_native {

// Row-major C (m, n) = A (m, k) @ op(B) + beta C; op(B) = B (k, n) or, with
// b_rows_are_n, B^T for a B stored (n, k). For T = float and double.
template <typename T>
void gemm(bool b_rows_are_n, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace lstm_native
