# Finds quarry's dependencies: the system's copy first, then what a PyPI build requirement ships.
# What is missing is reported in one error whose first line names the Debian packages and the one
# command that installs them (docs/building.md#dependencies says which comes from where, and why).
set(quarry_missing "")  # Debian packages to install

# A pip build compiles through ccache when it is installed (-C cmake.define.QUARRY_CCACHE=OFF: not).
# pip builds each time in a new isolated environment, and scikit-build-core then clears the build
# folder's CMake cache and objects: without ccache a second `pip install .` compiles everything.
option(QUARRY_CCACHE "pip builds: compile through ccache when it is installed" ON)
if(SKBUILD AND QUARRY_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(QUARRY_CCACHE_PROGRAM ccache)
  if(QUARRY_CCACHE_PROGRAM)
    set(CMAKE_CXX_COMPILER_LAUNCHER ${QUARRY_CCACHE_PROGRAM})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${QUARRY_CCACHE_PROGRAM})
    message(STATUS "quarry: compiling through ${QUARRY_CCACHE_PROGRAM}")
  endif()
endif()

find_package(OpenMP REQUIRED COMPONENTS CXX)

# nlohmann_json (header-only): nlohmann-json3-dev, else the headers of PyPI's nlohmann-json, a build
# requirement of pyproject.toml (found without importing it: only its files are needed).
find_package(nlohmann_json 3 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  find_program(quarry_python NAMES python3 python HINTS ${Python_ROOT_DIR}/bin NO_CACHE)
  if(Python_EXECUTABLE)
    set(quarry_python ${Python_EXECUTABLE})
  endif()
  if(quarry_python)
    execute_process(COMMAND ${quarry_python} -c
      "import importlib.util, os; s = importlib.util.find_spec('nlohmann_json'); print(os.path.join(os.path.dirname(s.origin), 'include') if s else '')"
      OUTPUT_VARIABLE quarry_json_hint OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  find_path(QUARRY_NLOHMANN_JSON_INCLUDE_DIR nlohmann/json.hpp HINTS ${quarry_json_hint})
  if(QUARRY_NLOHMANN_JSON_INCLUDE_DIR)
    add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
    target_include_directories(nlohmann_json::nlohmann_json INTERFACE
      ${QUARRY_NLOHMANN_JSON_INCLUDE_DIR})
    message(STATUS "quarry: nlohmann_json headers from ${QUARRY_NLOHMANN_JSON_INCLUDE_DIR}")
  else()
    list(APPEND quarry_missing nlohmann-json3-dev)
  endif()
endif()

# CLI11 (header-only) is needed by the quarry program only, and no PyPI package ships it. A pip
# build without it still makes the Python package, without the program (its `quarry` command then
# says how to get it); a plain build, which tests the program, requires it.
find_package(CLI11 CONFIG QUIET)
set(QUARRY_WITH_CLI ${CLI11_FOUND})
if(NOT CLI11_FOUND)
  if(SKBUILD)
    message(WARNING "quarry: CLI11 not found (Debian: libcli11-dev): the Python package is built "
      "without the `quarry` program. Install it with `sudo apt-get install libcli11-dev` and "
      "reinstall to get the program.")
  else()
    list(APPEND quarry_missing libcli11-dev)
  endif()
endif()

# FAISS (CPU k-means): no PyPI package ships it with its headers (faiss-cpu has libfaiss.so and no
# headers), so it comes from the system. Debian's libfaiss-dev is a static library whose CMake
# package links whatever libblas.so/liblapack.so the alternatives system points to, which may be
# the unoptimised reference BLAS. quarry links OpenBLAS instead, explicitly, so that k-means never
# runs on another BLAS by accident.
find_package(faiss CONFIG QUIET)
if(NOT faiss_FOUND)
  list(APPEND quarry_missing libfaiss-dev)
endif()
option(QUARRY_REQUIRE_OPENBLAS "Link FAISS with OpenBLAS and fail without it" ON)
find_library(QUARRY_OPENBLAS_LIBRARY NAMES openblas)
if(QUARRY_REQUIRE_OPENBLAS AND NOT QUARRY_OPENBLAS_LIBRARY)
  list(APPEND quarry_missing libopenblas-dev)
endif()

if(QUARRY_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    list(APPEND quarry_missing libgtest-dev)
  endif()
endif()
if(QUARRY_BUILD_BENCH)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    list(APPEND quarry_missing libbenchmark-dev)
  endif()
endif()

if(quarry_missing)
  list(JOIN quarry_missing " " quarry_missing)
  message(FATAL_ERROR "quarry needs the Debian packages ${quarry_missing}: install them with "
    "`sudo apt-get install -y ${quarry_missing}` (or `bash scripts/setup.sh`, which installs all "
    "of quarry's build dependencies). docs/building.md lists what comes from PyPI and what from "
    "the system.")
endif()

if(QUARRY_REQUIRE_OPENBLAS)
  # Replace the BLAS and LAPACK that FAISS's package names (files or targets) with OpenBLAS, which
  # has both. A shared libfaiss keeps the BLAS it was linked with: check that it is OpenBLAS.
  get_target_property(quarry_faiss_links faiss INTERFACE_LINK_LIBRARIES)
  list(FILTER quarry_faiss_links EXCLUDE REGEX "(^|/)lib(blas|lapack)[^/]*$|^(BLAS|LAPACK)::")
  list(APPEND quarry_faiss_links ${QUARRY_OPENBLAS_LIBRARY})
  set_target_properties(faiss PROPERTIES INTERFACE_LINK_LIBRARIES "${quarry_faiss_links}")
  get_target_property(quarry_faiss_type faiss TYPE)
  if(quarry_faiss_type STREQUAL "SHARED_LIBRARY")
    get_target_property(quarry_faiss_file faiss LOCATION)
    execute_process(COMMAND ldd ${quarry_faiss_file} OUTPUT_VARIABLE quarry_faiss_ldd ERROR_QUIET)
    string(REGEX MATCH "libblas[^\n]*=> *([^ \n]+)" quarry_faiss_blas "${quarry_faiss_ldd}")
    if(quarry_faiss_blas)
      file(REAL_PATH "${CMAKE_MATCH_1}" quarry_faiss_blas)
      if(NOT quarry_faiss_blas MATCHES "openblas")
        message(FATAL_ERROR "quarry: ${quarry_faiss_file} calls the BLAS ${quarry_faiss_blas}, "
          "not OpenBLAS: `sudo apt-get install -y libopenblas-dev` (Debian) makes OpenBLAS the "
          "system's BLAS; -DQUARRY_REQUIRE_OPENBLAS=OFF accepts any BLAS.")
      endif()
    endif()
  endif()
  message(STATUS "quarry: FAISS with OpenBLAS (${QUARRY_OPENBLAS_LIBRARY})")
endif()
# Nothing of FAISS is part of the FAISS plugin's interface: hide the FAISS code linked into it
# (Debian's is static) and the template instances of FAISS and nlohmann_json its objects contain,
# so that a process with another FAISS or nlohmann_json (faiss-cpu's, say) never binds to quarry's
# copies. (libquarry links the same version script for its nlohmann_json instances.)
set_property(TARGET faiss APPEND PROPERTY INTERFACE_LINK_OPTIONS
  "LINKER:--exclude-libs,libfaiss.a"
  "LINKER:--version-script=${CMAKE_CURRENT_LIST_DIR}/quarry-hidden.map")
