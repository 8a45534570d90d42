// The LSTM cell: the fused gate arithmetic of one row of a step, forward and
// backward. The formulas are those of functional.py:
//
//   forward:  i, f, o = sigmoid(z_i, z_f, z_o)   g = tanh(z_g)
//             c = f c_prev + i g                 m = o tanh(c)
//   backward: dc += dm o (1 - tanh(c)^2)         dz_o = dm tanh(c) o (1 - o)
//             dz_i = dc g i (1 - i)   dz_f = dc c_prev f (1 - f)   dz_g = dc i (1 - g^2)
//             dc_prev = dc f
//
// What a cell kind provides (this file is the pattern for cells/<kind>.h):
//
// * a struct named in LSTM_CELL_KINDS (cell.h) and included by cells.cpp,
// * `template <typename V, typename T> static void forward(int64_t j, const CellForward<T>& a)`:
//   units j ... j + lanes - 1 of one row, from the operands a (cell.h):
//   the gates from a.z (+ a.xw), the new state into a.c, the output into
//   a.m, and, where not null, what the backward pass needs into a.gates and
//   a.cs,
// * `template <typename V, typename T> static void backward(int64_t j, const CellBackward<T>& a)`:
//   the same units backward: the gate gradients into a.d_z, the cell state
//   gradient of the step before into a.dc,
//
// written once over the value type V with Ops<V> (vector_math.h): V is a
// scalar T or, for float, a vector of 8 or 16 lanes. The loop drivers, the
// products and the bias and weight gradients are the same for every kind;
// bindings.cpp picks the kind the loops run (`Cell`).
// Operands the LSTM has not got (peephole weights, ...) are fields to add to
// CellForward / CellBackward, which the drivers fill (null for the kinds
// without them).

#pragma once

#include <cstdint>

#include "../cell.h"
#include "../vector_math.h"

namespace lstm_native {

struct LSTMCell {
  template <typename V, typename T>
  static void forward(int64_t j, const CellForward<T>& a) {
    using O = Ops<V>;
    const int64_t zs = a.zs, H = a.H;
    const T *z = a.z, *xw = a.xw;
    V i = O::sigmoid(O::load(z + j) + O::load(xw + j));
    V f = O::sigmoid(O::load(z + zs + j) + O::load(xw + H + j));
    V g = O::tanh(O::load(z + 2 * zs + j) + O::load(xw + 2 * H + j));
    V o = O::sigmoid(O::load(z + 3 * zs + j) + O::load(xw + 3 * H + j));
    V c_new = f * O::load(a.c + j) + i * g;
    O::store(a.c + j, c_new);
    O::store(a.m + j, o * O::tanh(c_new));
    if (a.gates) {
      O::store(a.gates + j, i), O::store(a.gates + H + j, f);
      O::store(a.gates + 2 * H + j, g), O::store(a.gates + 3 * H + j, o);
    }
    if (a.cs) O::store(a.cs + j, c_new);
  }

  template <typename V, typename T>
  static void backward(int64_t j, const CellBackward<T>& a) {
    using O = Ops<V>;
    const int64_t H = a.H;
    const T *gates = a.gates, *dm_a = a.dm_a, *dm_b = a.dm_b;
    T* d_z = a.d_z;
    const V one = O::set(1.0);
    V i = O::load(gates + j), f = O::load(gates + H + j);
    V g = O::load(gates + 2 * H + j), o = O::load(gates + 3 * H + j);
    V tanh_c = O::tanh(O::load(a.c + j));
    V dm = dm_b ? O::load(dm_a + j) + O::load(dm_b + j) : O::load(dm_a + j);
    V d_c = O::load(a.dc + j) + dm * o * (one - tanh_c * tanh_c);
    O::store(d_z + j, d_c * g * i * (one - i));
    O::store(d_z + H + j, d_c * O::load(a.c_prev + j) * f * (one - f));
    O::store(d_z + 2 * H + j, d_c * i * (one - g * g));
    O::store(d_z + 3 * H + j, dm * tanh_c * o * (one - o));
    O::store(a.dc + j, d_c * f);
  }
};

}  // namespace lstm_native
