// The cell arithmetic of a row, for the loop drivers: nu units swept with the
// widest vectors of the build (16 floats with AVX-512, then 8 with AVX2), the
// rest one by one, each piece by the kind's per-vector forward or backward
// (cells/<kind>.h). Compiled for every kind in LSTM_CELL_KINDS (cell.h).

#include <cstdint>
#include <type_traits>

#include "cell.h"
#include "cells/lstm.h"
#include "vector_math.h"

namespace lstm_native {

template <typename Cell, typename T>
void cell_forward(int64_t nu, const CellForward<T>& row) {
  const CellForward<T> a = row;
  int64_t j = 0;
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>)
    for (; j + 16 <= nu; j += 16) Cell::template forward<Lanes<Avx512>>(j, a);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>)
    for (; j + 8 <= nu; j += 8) Cell::template forward<Lanes<Avx2>>(j, a);
#endif
  for (; j < nu; ++j) Cell::template forward<T>(j, a);
}

template <typename Cell, typename T>
void cell_backward(int64_t nu, const CellBackward<T>& row) {
  const CellBackward<T> a = row;
  int64_t j = 0;
#ifdef LSTM_AVX512
  if constexpr (std::is_same_v<T, float>)
    for (; j + 16 <= nu; j += 16) Cell::template backward<Lanes<Avx512>>(j, a);
#endif
#ifdef LSTM_AVX2
  if constexpr (std::is_same_v<T, float>)
    for (; j + 8 <= nu; j += 8) Cell::template backward<Lanes<Avx2>>(j, a);
#endif
  for (; j < nu; ++j) Cell::template backward<T>(j, a);
}

#define LSTM_CELL_ROWS(Cell)                                                        \
  template void cell_forward<Cell, float>(int64_t, const CellForward<float>&);     \
  template void cell_forward<Cell, double>(int64_t, const CellForward<double>&);   \
  template void cell_backward<Cell, float>(int64_t, const CellBackward<float>&);   \
  template void cell_backward<Cell, double>(int64_t, const CellBackward<double>&);
LSTM_CELL_KINDS(LSTM_CELL_ROWS)

}  // namespace lstm_native
