#pragma once
// Function attributes of the CPU backend's hot loops. QUARRY_CPU_CLONES compiles a function for
// AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and the baseline, and the loader picks one for the machine
// (GCC function multiversioning); functions inlined into it are compiled for each target too.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define QUARRY_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QUARRY_CPU_CLONES
#endif
#if defined(__GNUC__)
#define QUARRY_ALWAYS_INLINE inline __attribute__((always_inline))
#define QUARRY_NOINLINE __attribute__((noinline))
#else
#define QUARRY_ALWAYS_INLINE inline
#define QUARRY_NOINLINE
#endif
