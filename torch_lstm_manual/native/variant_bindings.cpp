// The Python bindings of the variants' loops (variant_loops.h): layer norm,
// peepholes, zoneout, recurrent dropout; each option's tensors are None where
// it is off. Registered by bindings.cpp.

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
#include "variant_args.h"
#include "variant_loops.h"

namespace {

using namespace lstm_native;

// forward with the variants: (y, gates, cs, h_n, c_n, r_hat, r_rstd), the
// last two undefined without layer norm, the saved ones without `save`.
std::vector<Tensor> variant_forward(const Tensor& xw_, const Tensor& h0_, const Tensor& c0, const Tensor& w_hh_,
                                    const c10::optional<Tensor>& w_hr_, const c10::optional<Tensor>& ln_hh,
                                    const c10::optional<Tensor>& ln_c, const c10::optional<Tensor>& ln_c_bias,
                                    const c10::optional<Tensor>& peephole, const c10::optional<Tensor>& m_rec,
                                    const c10::optional<Tensor>& m_cell, const c10::optional<Tensor>& m_hidden,
                                    const std::vector<int64_t>& batch_sizes, bool reverse, bool save) {
  c10::AutoGradMode no_grad(false);
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(xw_, "xw");
  TORCH_CHECK(c0.dim() == 2, "c0 must be (B, H), got ", c0.sizes());
  const int64_t H = c0.size(1), G = 4 * H;
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, xw_, P);
  check(xw_, "xw", s.N, G, xw_), check(h0_, "h0", s.B, P, xw_), check(c0, "c0", s.B, H, xw_);
  check(w_hh_, "w_hh", G, P, xw_);
  const Variant v(ln_hh, ln_c, ln_c_bias, peephole, m_rec, m_cell, m_hidden, s, H, P, xw_);
  Tensor xw = xw_.contiguous(), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  auto opt = xw.options();
  ForwardOutputs out(s, H, P, c0, save, opt);
  Tensor r_hat = save && v.norm() ? buffers().empty({s.N, G}, opt) : Tensor();
  Tensor r_rstd = save && v.norm() ? at::empty({s.N}, opt) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_variant_forward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    forward_variant<scalar_t>(s, StepRange{0, s.T, 0}, ptr(xw), ptr(h0), ptr(w_hh), ptr(w_hr), P, v.weights<scalar_t>(H),
                              v.masks<scalar_t>(), ptr(out.y), ptr(out.gates), ptr(out.cs), ptr(r_hat), ptr(r_rstd),
                              ptr(out.c_n));
  });
  std::vector<Tensor> results = out.results(s);
  results.push_back(r_hat), results.push_back(r_rstd);
  return results;
}

// backward with the variants: (d_z, d_r, d_h, d_h0, d_c0, d_b, d_ln_hh, d_ln_c,
// d_ln_c_bias, d_peephole), undefined where their option is off (d_r without
// layer norm, d_h without a projection).
std::vector<Tensor> variant_backward(const Tensor& d_y_, const Tensor& d_hn, const Tensor& d_cn,
                                     const Tensor& gates_, const Tensor& cs_, const Tensor& c0_,
                                     const c10::optional<Tensor>& r_hat_, const c10::optional<Tensor>& r_rstd_,
                                     const Tensor& w_hh_, const c10::optional<Tensor>& w_hr_,
                                     const c10::optional<Tensor>& ln_hh, const c10::optional<Tensor>& ln_c,
                                     const c10::optional<Tensor>& ln_c_bias, const c10::optional<Tensor>& peephole,
                                     const c10::optional<Tensor>& m_rec, const c10::optional<Tensor>& m_cell,
                                     const c10::optional<Tensor>& m_hidden, const std::vector<int64_t>& batch_sizes,
                                     bool reverse) {
  c10::AutoGradMode no_grad(false);
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(gates_, "gates");
  TORCH_CHECK(cs_.dim() == 2, "cs must be (N, H), got ", cs_.sizes());
  const int64_t H = cs_.size(1), G = 4 * H;
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, gates_, P);
  check(d_y_, "d_y", s.N, P, gates_), check(d_hn, "d_hn", s.B, P, gates_), check(d_cn, "d_cn", s.B, H, gates_);
  check(gates_, "gates", s.N, G, gates_), check(cs_, "cs", s.N, H, gates_), check(c0_, "c0", s.B, H, gates_);
  check(w_hh_, "w_hh", G, P, gates_);
  const Variant v(ln_hh, ln_c, ln_c_bias, peephole, m_rec, m_cell, m_hidden, s, H, P, gates_);
  Tensor r_hat = optional_tensor(r_hat_, "r_hat", s.N, G, gates_);
  Tensor r_rstd = optional_vector(r_rstd_, "r_rstd", s.N, gates_);
  TORCH_CHECK(!v.norm() || (r_hat.defined() && r_rstd.defined()),
              "with layer norm the backward loop needs the saved r_hat and r_rstd, got ",
              r_hat.defined() ? "" : "no ", "r_hat and ", r_rstd.defined() ? "" : "no ", "r_rstd");
  Tensor d_y = d_y_.contiguous(), gates = gates_.contiguous(), cs = cs_.contiguous(), c0 = c0_.contiguous();
  Tensor w_hh = w_hh_.contiguous();
  auto opt = gates.options();
  Tensor d_z = buffers().empty({s.N, G}, opt), d_r = v.norm() ? buffers().empty({s.N, G}, opt) : Tensor();
  Tensor d_h = w_hr.defined() ? at::empty({s.N, P}, opt) : Tensor();
  Tensor d_h0 = d_hn.contiguous().clone(), d_c0 = d_cn.contiguous().clone();
  const RowSumGrads sum_grads(v, H, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_variant_backward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const VariantWeights<scalar_t> w = v.weights<scalar_t>(H);
    VariantSums sums(w);
    backward_variant<scalar_t>(s, StepRange{0, s.T, 0}, ptr(d_y), ptr(gates), ptr(cs), ptr(c0), ptr(r_hat),
                               ptr(r_rstd), ptr(w_hh), ptr(w_hr), P, w, v.masks<scalar_t>(), ptr(d_z), ptr(d_r),
                               ptr(d_h), ptr(d_h0), ptr(d_c0), sums);
    sum_grads.store<scalar_t>(sums);
  });
  const RowSumGrads& g = sum_grads;
  return {d_z, d_r, d_h, d_h0, d_c0, g.d_b, g.d_ln_hh, g.d_ln_c, g.d_ln_c_bias, g.d_peephole};
}

}  // namespace

void lstm_native::bind_variants(pybind11::module& m) {
  m.def("variant_forward", &variant_forward,
        "forward_loop with the variants: (y, gates, cs, h_n, c_n, r_hat, r_rstd)",
        py::call_guard<py::gil_scoped_release>());
  m.def("variant_backward", &variant_backward,
        "backward_loop with the variants: (d_z, d_r, d_h, d_h0, d_c0, d_b, d_ln_hh, d_ln_c, d_ln_c_bias, d_peephole)",
        py::call_guard<py::gil_scoped_release>());
}
