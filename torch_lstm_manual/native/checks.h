// What the binding files share (bindings.cpp, variant_bindings.cpp,
// step_bindings.cpp): the packed layout of batch_sizes, the argument checks,
// the outputs of a forward loop and the input projection.

#pragma once

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cstdint>
#include <vector>

#include "buffers.h"
#include "loops.h"

namespace lstm_native {

using at::Tensor;

// The packed layout of batch_sizes (Steps), visited in reverse with `reverse`.
inline Steps make_steps(const std::vector<int64_t>& batch_sizes, bool reverse) {
  Steps s;
  s.T = static_cast<int64_t>(batch_sizes.size());
  TORCH_CHECK(s.T > 0, "batch_sizes must not be empty");
  int64_t start = 0;
  for (int64_t t = 0; t < s.T; ++t) {
    int64_t b = batch_sizes[t];
    TORCH_CHECK(b > 0 && (t == 0 || b <= batch_sizes[t - 1]),
                "batch_sizes must be positive and non-increasing, got ", batch_sizes);
    s.offset.push_back(start);
    s.size.push_back(b);
    s.order.push_back(reverse ? s.T - 1 - t : t);
    start += b;
  }
  s.N = start;
  s.B = batch_sizes[0];
  return s;
}

inline void check(const Tensor& t, const char* name, int64_t rows, int64_t cols, const Tensor& like) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, name, " must be (", rows, ", ",
              cols, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device().is_cpu(), name,
              " must be a CPU tensor of dtype ", like.scalar_type(), ", got ", t.scalar_type(), " on ",
              t.device());
}

// The first tensor of a call, which the others must match: a 2-d float32 or
// float64 CPU tensor.
inline void check_input(const Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-dimensional, got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble), name,
              " must be a float32 or float64 CPU tensor, got ", t.scalar_type(), " on ", t.device());
}

inline void check_vector(const Tensor& t, const char* name, int64_t n, const Tensor& like) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must be (", n, ",), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device().is_cpu(), name,
              " must be a CPU tensor of dtype ", like.scalar_type(), ", got ", t.scalar_type(), " on ", t.device());
}

inline Tensor optional_ptr_check(const c10::optional<Tensor>& w_hr, int64_t H, const Tensor& like, int64_t& P) {
  if (!w_hr.has_value() || !w_hr->defined()) return Tensor();
  P = w_hr->size(0);
  check(*w_hr, "w_hr", P, H, like);
  return w_hr->contiguous();
}

// h_n rows: each sequence's output at the last step that ran it.
inline Tensor final_outputs(const Steps& s, const Tensor& y) {
  auto h_n = at::empty({s.B, y.size(1)}, y.options());
  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.order[i], next = s.size_at(i + 1);
    if (s.size[t] > next)
      h_n.narrow(0, next, s.size[t] - next).copy_(y.narrow(0, s.offset[t] + next, s.size[t] - next));
  }
  return h_n;
}

// What a forward loop returns: y (N, P), and with `save` the gates (N, 4H,
// a kept buffer) and cell states (N, H); c_n starts as c0 and is updated in
// place. results() adds h_n.
struct ForwardOutputs {
  Tensor y, gates, cs, c_n;
  ForwardOutputs(const Steps& s, int64_t H, int64_t P, const Tensor& c0, bool save, const at::TensorOptions& opt)
      : y(at::empty({s.N, P}, opt)),
        gates(save ? buffers().empty({s.N, 4 * H}, opt) : Tensor()),
        cs(save ? at::empty({s.N, H}, opt) : Tensor()),
        c_n(c0.contiguous().clone()) {}
  std::vector<Tensor> results(const Steps& s) const { return {y, gates, cs, final_outputs(s, y), c_n}; }
};

// out (N, G) = rows @ w_ih^T (+ bias where defined), unchecked.
inline void project_out(Tensor& out, const Tensor& rows, const Tensor& w_ih, const Tensor& bias) {
  if (bias.defined())
    at::addmm_out(out, bias, rows, w_ih.t());
  else
    at::mm_out(out, rows, w_ih.t());
}

// xw = rows @ w_ih^T + bias, (N, G), into a kept buffer.
inline Tensor project(const Tensor& rows, const Tensor& w_ih, const c10::optional<Tensor>& bias) {
  c10::AutoGradMode no_grad(false);
  check_input(rows, "rows");
  TORCH_CHECK(w_ih.dim() == 2, "w_ih must be (4H, I), got ", w_ih.sizes());
  check(w_ih, "w_ih", w_ih.size(0), rows.size(1), rows);
  if (bias.has_value() && bias->defined()) check_vector(*bias, "bias", w_ih.size(0), rows);
  Tensor xw = buffers().empty({rows.size(0), w_ih.size(0)}, rows.options());
  project_out(xw, rows, w_ih, bias.has_value() ? *bias : Tensor());
  return xw;
}

}  // namespace lstm_native
