// The large buffers of the loops, kept for the next call (buffers.cpp).

#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <mutex>
#include <vector>

namespace lstm_native {

// The (N, 4H) buffers of the loops, kept for the next call once nobody holds
// them: the gates saved for the backward pass, and, where the products run
// outside the loop, the input projections xw and d_z. Fresh memory of that
// size is zeroed and mapped page by page by the kernel on every call, a few ms
// per training step at T=200, B=64, H=128; a training loop asks for the same
// sizes every step. (cs, a quarter of the size, is not kept: held through a
// multi-layer backward it would raise the peak memory more than it saves.)
// A kept buffer is free when no tensor refers to its storage any more. A
// request takes the smallest free one of its dtype with room for it and at
// most 5/4 of its size; when none fits, the free ones are dropped (they did
// not fit) and a buffer of exactly the request is made. release() drops the
// free ones, for torch_lstm_manual.native.empty_cache().
class BufferCache {
 public:
  // A buffer of `sizes`, kept or new; small or non-CPU requests get plain at::empty.
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);

  // Drop the buffers nobody holds; returns how many bytes they had.
  int64_t release();

 private:
  static constexpr int64_t kMinBytes = 1 << 20;
  static bool unused(const at::Tensor& t) { return t.storage().use_count() == 1; }
  int64_t drop_unused();
  std::mutex mutex_;
  std::vector<at::Tensor> kept_;
};

// The process's cache.
BufferCache& buffers();

}  // namespace lstm_native
