// The BLAS shim of blas.h.

#include "blas.h"

#ifndef LSTM_FORTRAN_BLAS
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#endif

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

}  // namespace

namespace lstm_native {

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
  using at::Tensor;
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  Tensor A = at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  Tensor Bm = b_rows_are_n ? at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opt).t()
                           : at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, opt);
  Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  if (beta == T(0)) at::mm_out(C, A, Bm); else C.addmm_(A, Bm, beta, 1);
#endif
}

template void gemm<float>(bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float,
                          float*, int64_t);
template void gemm<double>(bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t,
                           double, double*, int64_t);

}  // namespace lstm_native
