// No C++ exception may leave an OpenMP region: one that does calls std::terminate and kills the
// Python process. Kernels run what may throw inside a region (allocations above all) through
// OmpGuard::run, which keeps the first exception; after the region, rethrow() raises it in the
// calling thread, where pybind11 turns it into a Python exception (std::bad_alloc: MemoryError).
//
// Every thread of a team must reach each worksharing construct (omp for, single, barrier), so a
// guard never wraps one: it wraps the per-thread setup before the loop and each iteration's body,
// and a thread whose setup failed still takes part in the loop, skipping its iterations.
#pragma once
#include <atomic>
#include <exception>

namespace advrec {

class OmpGuard {
 public:
  template <typename F>
  void run(F&& body) noexcept {
    try {
      body();
    } catch (...) {
#ifdef ADVREC_OPENMP
#pragma omp critical(advrec_omp_guard)
#endif
      {
        if (!error_) error_ = std::current_exception();
      }
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  // True once any thread failed (a late true only skips more work).
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;  // written once, under the critical section
  std::atomic<bool> failed_{false};
};

}  // namespace advrec
