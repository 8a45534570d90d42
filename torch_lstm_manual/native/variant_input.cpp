// The passes of the variants from a layer's inputs (native.py's forward_input
// and backward_input for a call with any variant of the cell or the layer
// norm of the input projections): the loops of variant_loops.cpp a chunk of
// steps at a time, with the products over the chunk's rows around them.
//
//   forward, each chunk in order:  xw = rows W_ih^T + b  (ln_ih: γ_ih LN(rows W_ih^T) + b),
//                                  then its steps
//   backward, each chunk from the last:
//                                  H_prev = the states entering its steps, times the recurrent mask
//                                  r̂ = LN(H_prev W_hh^T), its rstd   (layer norm: recomputed, not saved)
//                                  its steps backward: d_z, d_r
//                                  dXW = d_z  (ln_ih: through γ_ih LN, the projections recomputed)
//                                  d_x = dXW W_ih,  dW_ih += dXW^T rows,  dW_hh += d_r^T H_prev
//
// Of the (N, 4H) tensors of the loops, only the saved gates span all steps:
// xw, r̂, d_z and d_r hold one chunk's rows (about 2 MiB of each), so that
// the peak memory of a training step with a variant is about that of the
// plain LSTM. The sums over the rows of the loops (d_b, the gains', the
// peepholes') add up in double over the chunks.

#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "bindings.h"
#include "checks.h"
#include "variant_args.h"
#include "variant_loops.h"

namespace {

using namespace lstm_native;

// Steps [begin, end) of the loop order, and their rows [lo, hi).
struct Chunk {
  int64_t begin, end, lo, hi;
};

// The steps in loop order, in chunks of at least `rows` rows (the last may have fewer).
std::vector<Chunk> chunks_of(const Steps& s, int64_t rows) {
  std::vector<Chunk> chunks;
  for (int64_t i = 0; i < s.T;) {
    Chunk c{i, i, s.N, 0};
    while (c.end < s.T && (c.end == c.begin || c.hi - c.lo < rows)) {
      const int64_t t = s.order[c.end++];
      c.lo = std::min(c.lo, s.offset[t]), c.hi = std::max(c.hi, s.offset[t] + s.size[t]);
    }
    chunks.push_back(c);
    i = c.end;
  }
  return chunks;
}

// The rows of a chunk: `rows` where the caller asks (> 0), else about 2^19 values of G units.
std::vector<Chunk> chunks_for(const Steps& s, int64_t G, int64_t rows) {
  return chunks_of(s, rows > 0 ? rows : std::max<int64_t>(128, (int64_t{1} << 19) / G));
}

int64_t most_rows(const std::vector<Chunk>& chunks) {
  int64_t most = 0;
  for (const Chunk& c : chunks) most = std::max(most, c.hi - c.lo);
  return most;
}

// The state entering each row's step in chunk c, as the forward loop reads
// it (the output of the step before in loop order, or h0), times the
// recurrent mask where there is one: out (hi - lo, P).
template <typename T>
void previous_states(const Steps& s, const Chunk& c, const T* y, const T* h0, const T* m_rec, int64_t P, T* out) {
  for (int64_t i = c.begin; i < c.end; ++i) {
    const int64_t t = s.order[i], b = s.size[t];
    const int64_t ran = i == 0 ? 0 : std::min(b, s.size_at(i - 1));  // rows that ran the step before
    T* to = out + (s.offset[t] - c.lo) * P;
    if (ran > 0) std::memcpy(to, y + s.offset[s.order[i - 1]] * P, sizeof(T) * ran * P);
    std::memcpy(to + ran * P, h0 + ran * P, sizeof(T) * (b - ran) * P);
    if (m_rec)
      for (int64_t k = 0; k < b * P; ++k) to[k] *= m_rec[k];
  }
}

// The masks of a call for the loops over a chunk: the zoneout masks, of any
// layout and of the call's dtype or bool, copied a chunk's rows at a time
// into buffers of the call's dtype (a bool mask takes a quarter of the
// memory of a float one: the module draws them so).
struct ChunkMasks {
  const Variant& v;
  Tensor cell, hidden;
  ChunkMasks(const Variant& v, int64_t rows, const at::TensorOptions& opt)
      : v(v),
        cell(v.m_cell.defined() ? at::empty({rows, v.m_cell.size(1)}, opt) : Tensor()),
        hidden(v.m_hidden.defined() ? at::empty({rows, v.m_hidden.size(1)}, opt) : Tensor()) {}
  template <typename T>
  VariantMasks<T> of(const Chunk& c) {
    auto rows = [&](Tensor& to, const Tensor& mask) -> const T* {
      if (!mask.defined()) return nullptr;
      to.narrow(0, 0, c.hi - c.lo).copy_(mask.narrow(0, c.lo, c.hi - c.lo));
      return to.data_ptr<T>();
    };
    return {Variant::ptr<T>(v.m_rec), rows(cell, v.m_cell), rows(hidden, v.m_hidden), c.lo};
  }
};

// forward_input with the variants: (y, gates, cs, h_n, c_n), the saved ones
// undefined without `save`; with layer norm of r, r̂ is not saved (the
// backward pass recomputes it).
std::vector<Tensor> variant_forward_input(
    const Tensor& rows_, const Tensor& w_ih_, const c10::optional<Tensor>& bias_,
    const c10::optional<Tensor>& ln_ih_, const Tensor& h0_, const Tensor& c0, const Tensor& w_hh_,
    const c10::optional<Tensor>& w_hr_, const c10::optional<Tensor>& ln_hh, const c10::optional<Tensor>& ln_c,
    const c10::optional<Tensor>& ln_c_bias, const c10::optional<Tensor>& peephole,
    const c10::optional<Tensor>& m_rec, const c10::optional<Tensor>& m_cell, const c10::optional<Tensor>& m_hidden,
    const std::vector<int64_t>& batch_sizes, bool reverse, bool save, int64_t chunk_rows) {
  c10::AutoGradMode no_grad(false);
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(rows_, "rows");
  TORCH_CHECK(c0.dim() == 2, "c0 must be (B, H), got ", c0.sizes());
  const int64_t H = c0.size(1), G = 4 * H, I = rows_.size(1);
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, rows_, P);
  check(rows_, "rows", s.N, I, rows_), check(w_ih_, "w_ih", G, I, rows_), check(h0_, "h0", s.B, P, rows_);
  check(c0, "c0", s.B, H, rows_), check(w_hh_, "w_hh", G, P, rows_);
  const Variant v(ln_hh, ln_c, ln_c_bias, peephole, m_rec, m_cell, m_hidden, s, H, P, rows_, false);
  Tensor bias = optional_vector(bias_, "bias", G, rows_), ln_ih = optional_vector(ln_ih_, "ln_ih", G, rows_);
  Tensor rows = rows_.contiguous(), w_ih = w_ih_.contiguous(), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  auto opt = rows.options();
  ForwardOutputs out(s, H, P, c0, save, opt);
  const std::vector<Chunk> chunks = chunks_for(s, G, chunk_rows);
  Tensor xw = at::empty({most_rows(chunks), G}, opt);
  ChunkMasks chunk_masks(v, most_rows(chunks), opt);
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "lstm_variant_forward_input", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const VariantWeights<scalar_t> w = v.weights<scalar_t>(H);
    for (const Chunk& c : chunks) {
      Tensor part = xw.narrow(0, 0, c.hi - c.lo), x = rows.narrow(0, c.lo, c.hi - c.lo);
      // With ln_ih, the bias comes after the layer norm.
      project_out(part, x, w_ih, ln_ih.defined() ? Tensor() : bias);
      if (ln_ih.defined()) normalize_rows<scalar_t>(c.hi - c.lo, G, ptr(part), ptr(ln_ih), ptr(bias));
      forward_variant<scalar_t>(s, StepRange{c.begin, c.end, c.lo}, ptr(part), ptr(h0), ptr(w_hh), ptr(w_hr), P, w,
                                chunk_masks.of<scalar_t>(c), ptr(out.y), ptr(out.gates), ptr(out.cs), nullptr, nullptr,
                                ptr(out.c_n));
    }
  });
  return out.results(s);
}

// backward_input with the variants: (d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh,
// d_b, d_ln_ih, d_ln_hh, d_ln_c, d_ln_c_bias, d_peephole), undefined where
// not asked for (need_*) or where their option is off (d_h without a
// projection; d_ln_ih where none of x, w_ih, ln_ih is asked for).
std::vector<Tensor> variant_backward_input(
    const Tensor& d_y_, const Tensor& d_hn, const Tensor& d_cn, const Tensor& gates_, const Tensor& cs_,
    const Tensor& c0_, const Tensor& w_hh_, const c10::optional<Tensor>& w_hr_, const c10::optional<Tensor>& ln_hh,
    const c10::optional<Tensor>& ln_c, const c10::optional<Tensor>& ln_c_bias, const c10::optional<Tensor>& peephole,
    const c10::optional<Tensor>& m_rec, const c10::optional<Tensor>& m_cell, const c10::optional<Tensor>& m_hidden,
    const Tensor& rows_, const Tensor& w_ih_, const c10::optional<Tensor>& ln_ih_, const Tensor& y_,
    const Tensor& h0_, const std::vector<int64_t>& batch_sizes, bool reverse, bool need_x, bool need_w_ih,
    bool need_w_hh, bool need_ln_ih, int64_t chunk_rows) {
  c10::AutoGradMode no_grad(false);
  const Steps s = make_steps(batch_sizes, reverse);
  check_input(gates_, "gates");
  TORCH_CHECK(cs_.dim() == 2, "cs must be (N, H), got ", cs_.sizes());
  TORCH_CHECK(rows_.dim() == 2, "rows must be (N, I), got ", rows_.sizes());
  const int64_t H = cs_.size(1), G = 4 * H, I = rows_.size(1);
  int64_t P = H;
  Tensor w_hr = optional_ptr_check(w_hr_, H, gates_, P);
  check(d_y_, "d_y", s.N, P, gates_), check(d_hn, "d_hn", s.B, P, gates_), check(d_cn, "d_cn", s.B, H, gates_);
  check(gates_, "gates", s.N, G, gates_), check(cs_, "cs", s.N, H, gates_), check(c0_, "c0", s.B, H, gates_);
  check(w_hh_, "w_hh", G, P, gates_), check(rows_, "rows", s.N, I, gates_), check(w_ih_, "w_ih", G, I, gates_);
  check(y_, "y", s.N, P, gates_), check(h0_, "h0", s.B, P, gates_);
  const Variant v(ln_hh, ln_c, ln_c_bias, peephole, m_rec, m_cell, m_hidden, s, H, P, gates_, false);
  Tensor ln_ih = optional_vector(ln_ih_, "ln_ih", G, gates_);
  Tensor d_y = d_y_.contiguous(), gates = gates_.contiguous(), cs = cs_.contiguous(), c0 = c0_.contiguous();
  Tensor w_hh = w_hh_.contiguous(), rows = rows_.contiguous(), w_ih = w_ih_.contiguous(), y = y_.contiguous();
  Tensor h0 = h0_.contiguous();
  auto opt = gates.options();
  const bool norm = v.norm(), norm_ih = ln_ih.defined() && (need_x || need_w_ih || need_ln_ih);
  const std::vector<Chunk> chunks = chunks_for(s, G, chunk_rows);
  const int64_t M = most_rows(chunks);
  // A chunk's rows: d_z, and with layer norm d_r, r̂ and its rstd; the
  // previous states; with ln_ih the projections, then their gradients.
  Tensor d_z = at::empty({M, G}, opt), d_r = norm ? at::empty({M, G}, opt) : Tensor();
  Tensor r_hat = norm ? at::empty({M, G}, opt) : Tensor(), r_rstd = norm ? at::empty({M}, opt) : Tensor();
  Tensor h_prev = norm || need_w_hh ? at::empty({M, P}, opt) : Tensor();
  // (r̂ is not read after its chunk's loop: its buffer takes the projections.)
  Tensor d_v = norm_ih ? (norm ? r_hat : at::empty({M, G}, opt)) : Tensor();
  Tensor d_gain = norm_ih ? at::empty({G}, opt) : Tensor();
  ChunkMasks chunk_masks(v, M, opt);
  // The results.
  Tensor d_x = need_x ? at::empty({s.N, I}, opt) : Tensor(), d_h = w_hr.defined() ? at::empty({s.N, P}, opt) : Tensor();
  Tensor d_h0 = d_hn.contiguous().clone(), d_c0 = d_cn.contiguous().clone();
  Tensor d_w_ih = need_w_ih ? at::zeros({G, I}, opt) : Tensor(), d_w_hh = need_w_hh ? at::zeros({G, P}, opt) : Tensor();
  Tensor d_ln_ih = norm_ih ? at::empty({G}, opt) : Tensor();
  const RowSumGrads sum_grads(v, H, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_variant_backward_input", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const VariantWeights<scalar_t> w = v.weights<scalar_t>(H);
    VariantSums sums(w);
    std::vector<double> gain_sum(norm_ih ? G : 0, 0.0);
    for (auto c = chunks.rbegin(); c != chunks.rend(); ++c) {
      const int64_t R = c->hi - c->lo;
      Tensor x = rows.narrow(0, c->lo, R), dz = d_z.narrow(0, 0, R);
      Tensor hp = h_prev.defined() ? h_prev.narrow(0, 0, R) : Tensor();
      const VariantMasks<scalar_t> masks = chunk_masks.of<scalar_t>(*c);
      if (hp.defined()) previous_states<scalar_t>(s, *c, ptr(y), ptr(h0), masks.recurrent, P, ptr(hp));
      if (norm) {
        Tensor r = r_hat.narrow(0, 0, R);
        at::mm_out(r, hp, w_hh.t());
        standardize_rows<scalar_t>(R, G, ptr(r_hat), ptr(r_rstd));
      }
      backward_variant<scalar_t>(s, StepRange{c->begin, c->end, c->lo}, ptr(d_y), ptr(gates), ptr(cs), ptr(c0),
                                 ptr(r_hat), ptr(r_rstd), ptr(w_hh), ptr(w_hr), P, w, masks, ptr(d_z), ptr(d_r),
                                 ptr(d_h), ptr(d_h0), ptr(d_c0), sums);
      Tensor d_xw = dz;
      if (norm_ih) {
        d_xw = d_v.narrow(0, 0, R);
        project_out(d_xw, x, w_ih, Tensor());
        d_normalize_rows<scalar_t>(R, G, ptr(d_xw), ptr(dz), ptr(ln_ih), ptr(d_gain));
        for (int64_t j = 0; j < G; ++j) gain_sum[j] += ptr(d_gain)[j];
      }
      if (need_x) {
        Tensor dx = d_x.narrow(0, c->lo, R);
        at::mm_out(dx, d_xw, w_ih);
      }
      if (need_w_ih) d_w_ih.addmm_(d_xw.t(), x);
      if (need_w_hh) d_w_hh.addmm_((norm ? d_r.narrow(0, 0, R) : dz).t(), hp);
    }
    sum_grads.store<scalar_t>(sums);
    for (int64_t j = 0; j < static_cast<int64_t>(gain_sum.size()); ++j)
      ptr(d_ln_ih)[j] = static_cast<scalar_t>(gain_sum[j]);
  });
  const RowSumGrads& g = sum_grads;
  return {d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, g.d_b, d_ln_ih, g.d_ln_hh, g.d_ln_c, g.d_ln_c_bias, g.d_peephole};
}

}  // namespace

void lstm_native::bind_variant_input(pybind11::module& m) {
  m.def("variant_forward_input", &variant_forward_input,
        "forward_input with the variants, a chunk of steps at a time: (y, gates, cs, h_n, c_n)",
        py::call_guard<py::gil_scoped_release>());
  m.def("variant_backward_input", &variant_backward_input,
        "backward_input with the variants, a chunk of steps at a time: (d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b, "
        "d_ln_ih, d_ln_hh, d_ln_c, d_ln_c_bias, d_peephole)",
        py::call_guard<py::gil_scoped_release>());
}
