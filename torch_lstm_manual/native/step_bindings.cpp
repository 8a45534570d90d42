// The Python bindings of one step of LSTMCell (cell_function.py). Registered
// by bindings.cpp.

#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "bindings.h"
#include "buffers.h"
#include "cell.h"
#include "checks.h"
#include "loops.h"
#include "parallel.h"

namespace {

using namespace lstm_native;

// The cell kind the step runs.
using Cell = LSTMCell;

// ---------------------------------------------------------------------------
// One step of LSTMCell (cell_function.py): the two products, then the cell
// arithmetic of each row, in one call.

// The summed bias b_ih + b_hh, either, or undefined.
Tensor step_bias(const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh) {
  const bool has_ih = b_ih.has_value() && b_ih->defined(), has_hh = b_hh.has_value() && b_hh->defined();
  if (has_ih && has_hh) return at::add(*b_ih, *b_hh);
  return has_ih ? *b_ih : has_hh ? *b_hh : Tensor();
}

// (h_1, c_1, gates): the new states (B, H) and the activated gates i|f|g|o
// (B, 4H) from x (B, I), h0, c0 (B, H), w_ih (4H, I), w_hh (4H, H), b_ih and
// b_hh (4H,) or None.
std::vector<Tensor> cell_step_forward(const Tensor& x, const Tensor& h0_, const Tensor& c0,
                                      const Tensor& w_ih, const Tensor& w_hh,
                                      const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh) {
  c10::AutoGradMode no_grad(false);
  check_input(x, "x");
  TORCH_CHECK(c0.dim() == 2, "c0 must be (B, H), got ", c0.sizes());
  const int64_t B = x.size(0), I = x.size(1), H = c0.size(1), G = 4 * H;
  check(h0_, "h0", B, H, x), check(c0, "c0", B, H, x), check(w_ih, "w_ih", G, I, x), check(w_hh, "w_hh", G, H, x);
  if (b_ih.has_value() && b_ih->defined()) check_vector(*b_ih, "b_ih", G, x);
  if (b_hh.has_value() && b_hh->defined()) check_vector(*b_hh, "b_hh", G, x);
  const Tensor bias = step_bias(b_ih, b_hh);
  const Tensor xw = bias.defined() ? at::addmm(bias, x, w_ih.t()) : at::mm(x, w_ih.t());  // (B, G)
  const Tensor z = at::mm(h0_, w_hh.t());  // (B, G)
  auto opt = x.options();
  Tensor c = c0.contiguous().clone(), h = at::empty({B, H}, opt), gates = at::empty({B, G}, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_cell_step_forward", [&] {
    const scalar_t *z_p = z.data_ptr<scalar_t>(), *xw_p = xw.data_ptr<scalar_t>();
    scalar_t *c_p = c.data_ptr<scalar_t>(), *h_p = h.data_ptr<scalar_t>(), *g_p = gates.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      cell_forward<Cell, scalar_t>(
          H, CellForward<scalar_t>{z_p + b * G, H, xw_p + b * G, H, c_p + b * H, h_p + b * H, g_p + b * G, nullptr});
  });
  return {h, c, gates};
}

// The step's backward pass from the gradients d_h, d_c (B, H) of its states
// (None: zeros) and what its forward pass saved: (d_x, d_h0, d_c0, d_w_ih,
// d_w_hh, d_b), each undefined where its flag is false (d_c0 always).
std::vector<Tensor> cell_step_backward(const c10::optional<Tensor>& d_h, const c10::optional<Tensor>& d_c,
                                       const Tensor& gates_, const Tensor& c_, const Tensor& c0_, const Tensor& x,
                                       const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, bool need_x,
                                       bool need_h0, bool need_w_ih, bool need_w_hh, bool need_b) {
  c10::AutoGradMode no_grad(false);
  check_input(gates_, "gates");
  TORCH_CHECK(c_.dim() == 2, "c must be (B, H), got ", c_.sizes());
  const int64_t B = c_.size(0), H = c_.size(1), G = 4 * H, I = x.size(-1);
  check(gates_, "gates", B, G, gates_), check(c_, "c", B, H, gates_), check(c0_, "c0", B, H, gates_);
  check(x, "x", B, I, gates_), check(h0, "h0", B, H, gates_);
  check(w_ih, "w_ih", G, I, gates_), check(w_hh, "w_hh", G, H, gates_);
  const bool has_dh = d_h.has_value() && d_h->defined(), has_dc = d_c.has_value() && d_c->defined();
  if (has_dh) check(*d_h, "d_h", B, H, gates_);
  if (has_dc) check(*d_c, "d_c", B, H, gates_);
  auto opt = gates_.options();
  const Tensor gates = gates_.contiguous(), c = c_.contiguous(), c0 = c0_.contiguous();
  const Tensor dm = has_dh ? d_h->contiguous() : at::zeros({B, H}, opt);
  Tensor dc = has_dc ? d_c->contiguous().clone() : at::zeros({B, H}, opt);  // becomes d_c0
  Tensor d_z = at::empty({B, G}, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_cell_step_backward", [&] {
    const scalar_t *g_p = gates.data_ptr<scalar_t>(), *c_p = c.data_ptr<scalar_t>(), *c0_p = c0.data_ptr<scalar_t>();
    const scalar_t* dm_p = dm.data_ptr<scalar_t>();
    scalar_t *dc_p = dc.data_ptr<scalar_t>(), *dz_p = d_z.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      cell_backward<Cell, scalar_t>(H, CellBackward<scalar_t>{g_p + b * G, H, c_p + b * H, c0_p + b * H,
                                                              dm_p + b * H, nullptr, dc_p + b * H, dz_p + b * G});
  });
  const Tensor d_z_t = d_z.t();  // (G, B)
  return {need_x ? at::mm(d_z, w_ih) : Tensor(), need_h0 ? at::mm(d_z, w_hh) : Tensor(), dc,
          need_w_ih ? at::mm(d_z_t, x) : Tensor(), need_w_hh ? at::mm(d_z_t, h0) : Tensor(),
          need_b ? d_z.sum(0) : Tensor()};
}

}  // namespace

void lstm_native::bind_cell_step(pybind11::module& m) {
  m.def("cell_step_forward", &cell_step_forward, "one LSTMCell step: (h_1, c_1, gates)",
        py::call_guard<py::gil_scoped_release>());
  m.def("cell_step_backward", &cell_step_backward, "its backward pass: (d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b)",
        py::call_guard<py::gil_scoped_release>());
}
