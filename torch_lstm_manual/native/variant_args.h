// The optional tensors of the variants' bindings (variant_bindings.cpp,
// variant_input.cpp), checked: each option's tensors, None where it is off.

#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "checks.h"
#include "variant_loops.h"

namespace lstm_native {

// A defined optional tensor, contiguous, after check(); else undefined.
inline Tensor optional_tensor(const c10::optional<Tensor>& t, const char* name, int64_t rows, int64_t cols,
                              const Tensor& like) {
  if (!t.has_value() || !t->defined()) return Tensor();
  check(*t, name, rows, cols, like);
  return t->contiguous();
}

inline Tensor optional_vector(const c10::optional<Tensor>& t, const char* name, int64_t n, const Tensor& like) {
  if (!t.has_value() || !t->defined()) return Tensor();
  check_vector(*t, name, n, like);
  return t->contiguous();
}

// A zoneout mask (rows, cols) of like's dtype or bool, or undefined: with
// `whole`, contiguous in like's dtype; else as given (its rows are copied a
// chunk at a time, see variant_input.cpp).
inline Tensor optional_mask(const c10::optional<Tensor>& t, const char* name, int64_t rows, int64_t cols,
                            const Tensor& like, bool whole) {
  if (!t.has_value() || !t->defined()) return Tensor();
  TORCH_CHECK(t->dim() == 2 && t->size(0) == rows && t->size(1) == cols, name, " must be (", rows, ", ", cols,
              "), got ", t->sizes());
  TORCH_CHECK((t->scalar_type() == like.scalar_type() || t->scalar_type() == at::kBool) && t->device().is_cpu(),
              name, " must be a CPU tensor of dtype ", like.scalar_type(), " or Bool, got ", t->scalar_type(), " on ",
              t->device());
  return whole ? t->to(like.scalar_type()).contiguous() : *t;
}

// The options' tensors of a call, checked against H, P, N, B; the zoneout
// masks as optional_mask() gives them.
struct Variant {
  Tensor ln_hh, ln_c, ln_c_bias, peephole, m_rec, m_cell, m_hidden;
  Variant(const c10::optional<Tensor>& ln_hh_, const c10::optional<Tensor>& ln_c_,
          const c10::optional<Tensor>& ln_c_bias_, const c10::optional<Tensor>& peephole_,
          const c10::optional<Tensor>& m_rec_, const c10::optional<Tensor>& m_cell_,
          const c10::optional<Tensor>& m_hidden_, const Steps& s, int64_t H, int64_t P, const Tensor& like,
          bool whole_masks = true)
      : ln_hh(optional_vector(ln_hh_, "ln_hh", 4 * H, like)),
        ln_c(optional_vector(ln_c_, "ln_c", H, like)),
        ln_c_bias(optional_vector(ln_c_bias_, "ln_c_bias", H, like)),
        peephole(optional_tensor(peephole_, "peephole", 3, H, like)),
        m_rec(optional_tensor(m_rec_, "recurrent mask", s.B, P, like)),
        m_cell(optional_mask(m_cell_, "cell mask", s.N, H, like, whole_masks)),
        m_hidden(optional_mask(m_hidden_, "hidden mask", s.N, P, like, whole_masks)) {
    TORCH_CHECK(ln_c.defined() == ln_c_bias.defined(), "the layer norm of the cell state needs ln_c and ln_c_bias "
                "together, got ", ln_c.defined() ? "ln_c" : "ln_c_bias", " alone");
  }
  bool norm() const { return ln_hh.defined(); }  // the layer norm of r
  template <typename T>
  VariantWeights<T> weights(int64_t H) const {
    return {H, ptr<T>(ln_hh), ptr<T>(ln_c), ptr<T>(ln_c_bias), ptr<T>(peephole)};
  }
  template <typename T>
  VariantMasks<T> masks() const {
    return {ptr<T>(m_rec), ptr<T>(m_cell), ptr<T>(m_hidden)};
  }
  template <typename T>
  static T* ptr(const Tensor& t) {
    return t.defined() ? t.data_ptr<T>() : nullptr;
  }
};

// The gradients that a backward pass adds up over the rows (VariantSums):
// d_b (G,), d_ln_hh (G,), d_ln_c and d_ln_c_bias (H,), d_peephole (3, H),
// each undefined where its option is off.
struct RowSumGrads {
  Tensor d_b, d_ln_hh, d_ln_c, d_ln_c_bias, d_peephole;
  RowSumGrads(const Variant& v, int64_t H, const at::TensorOptions& opt)
      : d_b(at::empty({4 * H}, opt)),
        d_ln_hh(v.norm() ? at::empty({4 * H}, opt) : Tensor()),
        d_ln_c(v.ln_c.defined() ? at::empty({H}, opt) : Tensor()),
        d_ln_c_bias(v.ln_c.defined() ? at::empty({H}, opt) : Tensor()),
        d_peephole(v.peephole.defined() ? at::empty({3, H}, opt) : Tensor()) {}
  // The sums of a pass into the tensors.
  template <typename T>
  void store(const VariantSums& sums) const {
    sums.store(Variant::ptr<T>(d_b), Variant::ptr<T>(d_ln_hh), Variant::ptr<T>(d_ln_c), Variant::ptr<T>(d_ln_c_bias),
               Variant::ptr<T>(d_peephole));
  }
};

}  // namespace lstm_native
