// Run-time ISA dispatch shared by the CPU kernels: hot loops are compiled for the baseline ISA
// and again for AVX2 (GCC/Clang on x86), and the AVX2 copy is chosen when the CPU has it. AVX2
// without FMA performs the same IEEE operations, so no multiply-add is contracted differently.
// OpenMP regions stay outside the dispatched functions (an outlined region would not inherit
// the target attribute).
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define ADVREC_X86_DISPATCH 1
#define ADVREC_INLINE inline __attribute__((always_inline))
#define ADVREC_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define ADVREC_INLINE inline
#endif

namespace advrec {

// Whether the running CPU supports AVX2 (false where there is no dispatch).
inline bool cpu_has_avx2() {
#ifdef ADVREC_X86_DISPATCH
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace advrec
