# Decides whether the CUDA backend is built. CUDA is optional: without a CUDA compiler quarry builds
# CPU-only with the same public API.
include(CheckLanguage)
set(QUARRY_WITH_CUDA OFF)
if(QUARRY_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Default: $QUARRY_CUDA_ARCHS if set; else the GPUs of this machine ("native") when it has one;
    # else every architecture CUDA 13 supports as machine code (Turing .. Blackwell), plus PTX of
    # the newest for GPUs that come later (a long build). Override with
    # -DCMAKE_CUDA_ARCHITECTURES=90 (one architecture builds much faster).
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      execute_process(COMMAND nvidia-smi -L RESULT_VARIABLE quarry_no_gpu OUTPUT_QUIET ERROR_QUIET)
      if(DEFINED ENV{QUARRY_CUDA_ARCHS} AND NOT "$ENV{QUARRY_CUDA_ARCHS}" STREQUAL "")
        set(quarry_archs "$ENV{QUARRY_CUDA_ARCHS}")
      elseif(quarry_no_gpu EQUAL 0)
        set(quarry_archs native)
      else()
        set(quarry_archs "75-real;80-real;86-real;89-real;90-real;100-real;120-real;120-virtual")
      endif()
      set(CMAKE_CUDA_ARCHITECTURES "${quarry_archs}" CACHE STRING "CUDA architectures")
    endif()
    enable_language(CUDA)
    # CMake 3.25 cannot pass C++20 to nvcc; device code and the headers it includes stay C++17.
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    # One CUDA runtime per process: the plugin and the programs that call CUDA themselves (tests,
    # benchmarks) share libcudart.so rather than each carrying a static copy.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    find_package(CUDAToolkit REQUIRED)
    set(QUARRY_WITH_CUDA ON)
    message(STATUS "quarry: CUDA backend ON (architectures: ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(SKBUILD)  # a pip build asked for the plugin (QUARRY_CUDA=1): say why there is none
    message(FATAL_ERROR "quarry: the CUDA plugin was asked for (QUARRY_CUDA / QUARRY_ENABLE_CUDA) "
      "but no CUDA compiler was found: put CUDA 13's nvcc on the PATH or set CUDACXX.")
  else()
    message(STATUS "quarry: no CUDA compiler found, building the CPU backend only")
  endif()
else()
  message(STATUS "quarry: CUDA backend disabled (QUARRY_ENABLE_CUDA=OFF)")
endif()
