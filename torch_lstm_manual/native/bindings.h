// The registration of the bindings that live outside bindings.cpp.

#pragma once

#include <torch/csrc/utils/pybind.h>

namespace lstm_native {

void bind_variants(pybind11::module& m);   // variant_bindings.cpp
void bind_variant_input(pybind11::module& m);  // variant_input.cpp
void bind_cell_step(pybind11::module& m);  // step_bindings.cpp

}  // namespace lstm_native
