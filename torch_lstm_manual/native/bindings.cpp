// The Python bindings of the native loops of the plain LSTM: their outputs and
// the choice of loop driver (loops.h) for the cell kind below; the module
// registers those of variant_bindings.cpp and step_bindings.cpp too.

#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "bindings.h"
#include "buffers.h"
#include "cell.h"
#include "checks.h"
#include "loops.h"
#include "parallel.h"
#include "tiles.h"

namespace {

using at::Tensor;
using namespace lstm_native;

// The cell kind the loops run.
using Cell = LSTMCell;

// The forward loop on tiles where tiled(), else with BLAS products.
template <typename T>
void forward_loop(const Steps& s, const T* xw, const T* h0, const T* w_hh, const T* w_hr, int64_t H, int64_t P, T* y,
                  T* gates, T* cs, T* c_run, T* z, T* m, T* w_perm) {
  if constexpr (std::is_same_v<T, float>)
    if (tiled(w_hr)) {
      const StepInput in{xw, nullptr, 0, nullptr, nullptr};
      return forward_tiled<Cell>(s, in, h0, w_hh, H, y, gates, cs, c_run, threads_for(s.B, H, P));
    }
  forward_blas<Cell, T>(s, xw, h0, w_hh, w_hr, H, P, y, gates, cs, c_run, z, m, w_perm);
}

// The backward loop on tiles where tiled(), else with BLAS products.
template <typename T>
void backward_loop(const Steps& s, const T* d_y, const T* d_hn, const T* gates, const T* cs, const T* c0,
                   const T* w_hh, const T* w_hr, int64_t H, int64_t P, T* d_z, T* d_h, T* dc_run, T* dh, T* dm,
                   T* d_b) {
  if constexpr (std::is_same_v<T, float>)
    if (tiled(w_hr)) {
      const StepGrads out{d_z, nullptr, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
      return backward_tiled<Cell>(s, d_y, d_hn, gates, cs, c0, w_hh, H, out, dc_run, d_b, threads_for(s.B, H, P));
    }
  backward_blas<Cell, T>(s, d_y, d_hn, gates, cs, c0, w_hh, w_hr, H, P, d_z, d_h, dc_run, dh, dm, d_b);
}


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
    forward_loop<scalar_t>(s, ptr(xw), ptr(h0), ptr(w_hh), ptr(w_hr), H, P, ptr(out.y), ptr(out.gates),
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
    backward_loop<scalar_t>(s, ptr(d_y), ptr(d_hn), ptr(gates), ptr(cs), ptr(c0), ptr(w_hh), ptr(w_hr), H, P,
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
  forward_tiled<Cell>(s, in, ptr(h0), ptr(w_hh), H, ptr(out.y), ptr(out.gates), ptr(out.cs), ptr(out.c_n),
                      threads_for(s.B, H, H + I));
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
  backward_tiled<Cell>(s, ptr(d_y), ptr(d_hn), ptr(gates), ptr(cs), ptr(c0), ptr(w_hh), H, out, ptr(d_c0),
                       ptr(d_b), threads_for(s.B, H, H + I));
  return {d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b};
}

// `f` on the arguments of the two directions of a layer at once (run_both):
// (f(*first), f(*second)), each tuple holding the arguments of one call.
template <typename R, typename... A>
auto both(R (*f)(A...)) {
  return [f](const std::tuple<std::decay_t<A>...>& first, const std::tuple<std::decay_t<A>...>& second) {
    return run_both([&] { return std::apply(f, first); }, [&] { return std::apply(f, second); });
  };
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
  bind_variants(m);
  bind_variant_input(m);
  bind_cell_step(m);
  m.def("project", &project, "input projection: rows @ w_ih^T + bias", py::call_guard<py::gil_scoped_release>());
  m.def("split_free", [](int64_t H, bool float32) {
    return split_free(H, available_threads(), float32 && tile_width() > 0 ? tile_width() : 1);
  }, "whether the loops on H units compute the same on any number of threads up to torch's");
  // The two directions of a layer at once: each takes two tuples of arguments and returns the two results.
  m.def("backward_both", both(&backward), "backward of two directions at once",
        py::call_guard<py::gil_scoped_release>());
  m.def("forward_input_both", both(&forward_input), "forward_input of two directions at once",
        py::call_guard<py::gil_scoped_release>());
  m.def("backward_input_both", both(&backward_input), "backward_input of two directions at once",
        py::call_guard<py::gil_scoped_release>());
}
