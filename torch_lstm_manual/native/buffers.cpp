// The buffer cache of buffers.h, in pages of its own.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/accumulate.h>
#include <c10/util/strides.h>

#include <algorithm>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

#include "buffers.h"

namespace {

using at::Tensor;

// n elements in pages of their own (mmap), outside the malloc heap, so that
// a buffer kept for long does not pin the heap that the rest of the
// program allocates from (which would then go back to the kernel and
// fault in again, step after step).
Tensor mapped_empty(int64_t n, const at::TensorOptions& options) {
#if defined(__unix__) || defined(__APPLE__)
  const size_t bytes = static_cast<size_t>(n) * options.dtype().itemsize();
  void* p = options.device().is_cpu() && bytes > 0
                ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : MAP_FAILED;
  if (p != MAP_FAILED) {
    try {
      return at::from_blob(p, {n}, [bytes](void* q) { munmap(q, bytes); }, options);
    } catch (...) {
      munmap(p, bytes);
      throw;
    }
  }
#endif
  return at::empty({n}, options);
}

}  // namespace

namespace lstm_native {

using at::Tensor;

Tensor BufferCache::empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t n = c10::multiply_integers(sizes);
  if (n * static_cast<int64_t>(options.dtype().itemsize()) < kMinBytes || !options.device().is_cpu())
    return at::empty(sizes, options);
  std::lock_guard<std::mutex> lock(mutex_);
  const Tensor* best = nullptr;
  for (const Tensor& kept : kept_)
    if (unused(kept) && kept.scalar_type() == c10::typeMetaToScalarType(options.dtype()) && kept.numel() >= n &&
        kept.numel() * 4 <= n * 5 && (!best || kept.numel() < best->numel()))
      best = &kept;
  if (!best) {
    drop_unused();
    kept_.push_back(mapped_empty(n, options));
    best = &kept_.back();
  }
  return at::empty({0}, options).set_(best->storage(), 0, sizes, c10::contiguous_strides(sizes));
}

int64_t BufferCache::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  return drop_unused();
}

int64_t BufferCache::drop_unused() {
  int64_t bytes = 0;
  for (const Tensor& kept : kept_)
    if (unused(kept)) bytes += static_cast<int64_t>(kept.nbytes());
  kept_.erase(std::remove_if(kept_.begin(), kept_.end(), unused), kept_.end());
  return bytes;
}

// Never destroyed: at exit, tensors must not be freed after the libraries and
// the interpreter they belong to have shut down; the kernel takes the pages back.
BufferCache& buffers() {
  static BufferCache* cache = new BufferCache();
  return *cache;
}

}  // namespace lstm_native
