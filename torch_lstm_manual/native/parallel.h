// The thread team of the loops: one OpenMP parallel region per loop, thread k
// owning a contiguous slice of the columns (columns), a barrier per step,
// per-thread memory that fails without ending the process (Team, Scratch);
// two loops at once, each on its own team (run_both).

#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <thread>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef LSTM_MKL
extern "C" int MKL_Set_Num_Threads_Local(int);  // threads of MKL calls from this thread
#endif

namespace lstm_native {

// A contiguous range [lo, hi) of `n` columns for thread `tid` of `nt`, in
// multiples of 8 so that every thread but the last runs whole vectors.
inline std::pair<int64_t, int64_t> columns(int64_t n, int tid, int nt) {
  int64_t chunk = ((n + nt - 1) / nt + 7) / 8 * 8;
  int64_t lo = std::min(n, tid * chunk);
  return {lo, std::min(n, lo + chunk)};
}

// Whether the loops on H units compute the same, bit for bit, on any number
// of threads up to nt. The products are the same on any split of the columns,
// but the cell arithmetic of a unit depends on the vector it runs in
// (cells.cpp): it is the same where every thread's first unit is a multiple
// of `lanes`, the widest vector of the cell arithmetic.
inline bool split_free(int64_t H, int nt, int lanes) {
  const int most = static_cast<int>(std::min<int64_t>(nt, (H + 7) / 8));  // threads_for's most
  for (int n = 2; n <= most; ++n)
    for (int tid = 1; tid < n; ++tid)
      if (columns(H, tid, n).first < H && columns(H, tid, n).first % lanes != 0) return false;
  return true;
}

// The threads of the loops started from this thread: at::get_num_threads(),
// or, inside run_both, this thread's share of them.
inline thread_local int thread_share = 0;
inline int available_threads() { return thread_share > 0 ? thread_share : at::get_num_threads(); }

// Threads for a step of b rows: one below ~0.5 MFLOP of recurrent product,
// where a barrier per step costs more than it saves.
inline int threads_for(int64_t b, int64_t H, int64_t P) {
  int nt = available_threads();
#ifndef _OPENMP
  nt = 1;
#endif
  if (b * 4 * H * P < (1 << 18)) nt = 1;
  return std::max(1, std::min<int>(nt, static_cast<int>((H + 7) / 8)));
}

inline void barrier(int nt) {
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp barrier
  }
#endif
}

// A thread body allocates its own memory at its start, inside the parallel
// region, where an exception would end the process. A thread whose
// allocation failed says so; after one barrier every thread knows, all of
// them leave, and run_parallel raises once the region is over.
struct Team {
  std::atomic<bool> failed{false};
  // Whether every thread of the team got its memory.
  bool all_allocated(bool ok, int nt) {
    if (!ok) failed = true;
    barrier(nt);
    return !failed;
  }
};

// Run body(tid, nt, team) on nt threads. Barriers inside body are `#pragma omp barrier`.
template <typename F>
void run_parallel(int nt, const F& body) {
  // Each thread makes its own, single-threaded BLAS calls.
  auto single_blas = [](const auto& f) {
#ifdef LSTM_MKL
    int previous = MKL_Set_Num_Threads_Local(1);
    f();
    MKL_Set_Num_Threads_Local(previous);
#else
    f();
#endif
  };
  Team team;
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    single_blas([&] { body(omp_get_thread_num(), omp_get_num_threads(), team); });
  } else
#endif
    single_blas([&] { body(0, 1, team); });
  TORCH_CHECK(!team.failed, "the native LSTM loops could not allocate their per-thread memory");
}

// (first(), second()), the two run at the same time: second() on a new
// thread, first() on this one, the loops of each on its own team of half of
// this thread's threads (with two, one each: no barrier per step). The new
// thread's torch operations run with the thread settings of a new torch
// thread (at::init_num_threads). An exception of either is raised once both
// are over.
template <typename F, typename S>
auto run_both(const F& first, const S& second) {
  const int nt = available_threads();
  auto with_share = [](int n, const auto& f, auto& result, std::exception_ptr& error) {
    const int previous = thread_share;
    thread_share = std::max(1, n);
    try {
      result = f();
    } catch (...) {
      error = std::current_exception();
    }
    thread_share = previous;
  };
  std::decay_t<decltype(first())> a;
  std::decay_t<decltype(second())> b;
  std::exception_ptr error_a, error_b;
  std::thread other([&] {
    at::init_num_threads();
    with_share(nt / 2, second, b, error_b);
  });
  with_share(nt - nt / 2, first, a, error_a);
  other.join();
  if (error_a) std::rethrow_exception(error_a);
  if (error_b) std::rethrow_exception(error_b);
  return std::make_pair(std::move(a), std::move(b));
}

// 64-byte aligned float scratch, one per thread.
struct Scratch {
  float* p;
  explicit Scratch(int64_t n) : p(static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64 + 1) * 64))) {
    TORCH_CHECK(p, "out of memory for ", n, " floats of scratch");
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace lstm_native
