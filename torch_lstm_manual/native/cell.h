// The cell arithmetic as the loop drivers see it: one row of a step, nu
// hidden units, forward and backward, for any cell kind.
//
// The drivers (tiled_loops.cpp, blas_loops.cpp) lay out the products and the
// rows; for each row they fill a CellForward or CellBackward with its operands
// and call cell_forward<Cell> / cell_backward<Cell>. They are templates over
// the kind and do not know which one they run. cells.cpp sweeps a row over the
// widest vectors the build has (vector_math.h) and calls the kind's per-vector
// arithmetic, cells/<kind>.h, which says what a kind provides.
//
// Layout: gate k of a row is at z + k * zs (the recurrent products) and at
// offset k * H in xw, gates and d_z.

#pragma once

#include <cstdint>

namespace lstm_native {

// The operands of one row of the forward step; the pointers are at the row's
// first unit.
template <typename T>
struct CellForward {
  const T* z;  // the recurrent products, gate k at z + k * zs
  int64_t zs;
  const T* xw;  // what the row adds to them: its input projections, or the bias
  int64_t H;
  T* c;      // the cell state: the previous one in, the new one out
  T* m;      // the output
  T* gates;  // the gate activations for the backward pass, or null
  T* cs;     // the new cell state for the backward pass, or null
};

// The operands of one row of the backward step.
template <typename T>
struct CellBackward {
  const T* gates;   // the saved gate activations
  int64_t H;
  const T* c;       // the saved cell state of this step
  const T* c_prev;  // and of the step before (c0 where the sequence starts)
  const T* dm_a;    // the output gradient, dm_a + dm_b (dm_b may be null)
  const T* dm_b;
  T* dc;   // the cell state gradient: this step's in, the previous step's out
  T* d_z;  // the gate gradients (pre-activation)
};

template <typename Cell, typename T>
void cell_forward(int64_t nu, const CellForward<T>& row);
template <typename Cell, typename T>
void cell_backward(int64_t nu, const CellBackward<T>& row);

// The cell kinds, each defined in cells/<kind>.h. The drivers and cells.cpp
// are compiled for every kind in this list: X(Kind) for each.
struct LSTMCell;
#define LSTM_CELL_KINDS(X) X(LSTMCell)

}  // namespace lstm_native
