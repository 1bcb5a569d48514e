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
    # Default: every architecture CUDA 13 supports as machine code (Turing .. Blackwell), plus PTX
    # of the newest for GPUs that come later. Override with -DCMAKE_CUDA_ARCHITECTURES=90 (one
    # architecture builds much faster) or =native.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "75-real;80-real;86-real;89-real;90-real;100-real;120-real;120-virtual"
          CACHE STRING "CUDA architectures")
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
  else()
    message(STATUS "quarry: no CUDA compiler found, building the CPU backend only")
  endif()
else()
  message(STATUS "quarry: CUDA backend disabled (QUARRY_ENABLE_CUDA=OFF)")
endif()
