# The engine core as a static library, shared by the addon (root CMakeLists.txt) and the GoogleTest
# project (native/tests). Finds libtorch, and enables CUDA / NCCL code when they are available:
#   QWEN3_WITH_CUDA  libtorch was built with CUDA (the torch_cuda target exists)
#   QWEN3_WITH_NCCL  additionally nccl.h and libnccl were found
# libtorch comes from Torch_DIR if set, else from the Python `torch` package if one is importable
# (the GPU hosts; put ahead of CMAKE_PREFIX_PATH), else from CMAKE_PREFIX_PATH or the system
# (Debian's libtorch-dev). NCCL: NCCL_ROOT / NCCL_HOME / NCCL_DIR, then the system, then the
# nvidia-nccl wheel beside the Python torch.
include_guard(GLOBAL)

set(QWEN3_NATIVE_DIR "${CMAKE_CURRENT_LIST_DIR}/..")
option(QWEN3_TORCH_FROM_PYTHON "Look for libtorch in the Python torch package first" ON)
option(QWEN3_ENABLE_NCCL "Use NCCL for tensor parallelism on CUDA when found" ON)

if(NOT DEFINED CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD 17)
endif()
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)

if(QWEN3_TORCH_FROM_PYTHON AND NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  execute_process(
    COMMAND python3 -c "import torch, sys; sys.stdout.write(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE QWEN3_PYTHON_TORCH_PREFIX
    RESULT_VARIABLE _qwen3_python_rc
    ERROR_QUIET)
  if(_qwen3_python_rc EQUAL 0 AND QWEN3_PYTHON_TORCH_PREFIX)
    message(STATUS "qwen3: using libtorch from Python: ${QWEN3_PYTHON_TORCH_PREFIX}")
    list(PREPEND CMAKE_PREFIX_PATH "${QWEN3_PYTHON_TORCH_PREFIX}")
  else()
    unset(QWEN3_PYTHON_TORCH_PREFIX)
  endif()
endif()

set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
message(STATUS "qwen3: Torch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")

set(QWEN3_WITH_CUDA OFF)
set(QWEN3_WITH_NCCL OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(QWEN3_WITH_CUDA ON)
  if(QWEN3_ENABLE_NCCL)
    set(_qwen3_nccl_hints "$ENV{NCCL_ROOT}" "$ENV{NCCL_HOME}" "$ENV{NCCL_DIR}")
    set(_qwen3_nccl_fallback "")
    if(QWEN3_PYTHON_TORCH_PREFIX)
      # The nvidia-nccl wheel that PyTorch itself loads (site-packages/nvidia/nccl; the prefix is
      # site-packages/torch/share/cmake). PATHS, not HINTS: searched after the system's.
      get_filename_component(_qwen3_site "${QWEN3_PYTHON_TORCH_PREFIX}/../../.." ABSOLUTE)
      list(APPEND _qwen3_nccl_fallback "${_qwen3_site}/nvidia/nccl")
    endif()
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_qwen3_nccl_hints} PATHS ${_qwen3_nccl_fallback}
      PATH_SUFFIXES include)
    if(NCCL_INCLUDE_DIR)
      get_filename_component(_qwen3_nccl_root "${NCCL_INCLUDE_DIR}/.." ABSOLUTE)
      find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
        HINTS "${_qwen3_nccl_root}" ${_qwen3_nccl_hints}
        PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
    endif()
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(QWEN3_WITH_NCCL ON)
      message(STATUS "qwen3: NCCL ${NCCL_LIBRARY} (headers ${NCCL_INCLUDE_DIR})")
    else()
      message(WARNING "qwen3: CUDA without NCCL: tensor parallelism on GPUs is disabled")
    endif()
  endif()
endif()
message(STATUS "qwen3: CUDA ${QWEN3_WITH_CUDA}, NCCL ${QWEN3_WITH_NCCL}")

# nlohmann-json (header-only, >= 3.11) reads the checkpoint's JSON: Debian's nlohmann-json3-dev, or
# a copy of its include directory named by QWEN3_NLOHMANN_JSON_INCLUDE_DIR (the GPU host bundle's
# .device/include, see scripts/device/pack.sh).
set(QWEN3_NLOHMANN_JSON_INCLUDE_DIR "" CACHE PATH "Directory holding nlohmann/json.hpp (optional)")
if(QWEN3_NLOHMANN_JSON_INCLUDE_DIR)
  set(_qwen3_json_hpp "${QWEN3_NLOHMANN_JSON_INCLUDE_DIR}/nlohmann/json.hpp")
  if(NOT EXISTS "${_qwen3_json_hpp}")
    message(FATAL_ERROR "qwen3: QWEN3_NLOHMANN_JSON_INCLUDE_DIR has no nlohmann/json.hpp")
  endif()
  # The version macros live in detail/abi_macros.hpp since 3.11, in json.hpp before.
  set(_qwen3_json_version "")
  foreach(_file json.hpp detail/abi_macros.hpp)
    if(EXISTS "${QWEN3_NLOHMANN_JSON_INCLUDE_DIR}/nlohmann/${_file}")
      file(STRINGS "${QWEN3_NLOHMANN_JSON_INCLUDE_DIR}/nlohmann/${_file}" _lines
        REGEX "#define NLOHMANN_JSON_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+")
      string(APPEND _qwen3_json_version "${_lines}")
    endif()
  endforeach()
  string(REGEX REPLACE ".*MAJOR +([0-9]+).*MINOR +([0-9]+).*PATCH +([0-9]+).*" "\\1.\\2.\\3"
    _qwen3_json_version "${_qwen3_json_version}")
  if(_qwen3_json_version VERSION_LESS 3.11)
    message(FATAL_ERROR "qwen3: nlohmann-json ${_qwen3_json_version} in "
      "${QWEN3_NLOHMANN_JSON_INCLUDE_DIR} is too old: 3.11 or newer is needed")
  endif()
  add_library(qwen3_nlohmann_json INTERFACE)
  target_include_directories(qwen3_nlohmann_json SYSTEM INTERFACE
    "${QWEN3_NLOHMANN_JSON_INCLUDE_DIR}")
  set(QWEN3_JSON_TARGET qwen3_nlohmann_json)
else()
  find_package(nlohmann_json 3.11 QUIET)
  if(NOT nlohmann_json_FOUND)
    message(FATAL_ERROR "qwen3: nlohmann-json 3.11 or newer not found: install it "
      "(apt-get install nlohmann-json3-dev), or set nlohmann_json_DIR to its CMake package, or "
      "QWEN3_NLOHMANN_JSON_INCLUDE_DIR to a directory holding nlohmann/json.hpp")
  endif()
  set(_qwen3_json_version "${nlohmann_json_VERSION}")
  set(QWEN3_JSON_TARGET nlohmann_json::nlohmann_json)
endif()
message(STATUS "qwen3: nlohmann-json ${_qwen3_json_version}")

set(QWEN3_CORE_SOURCES
  ${QWEN3_NATIVE_DIR}/src/common/error.cpp
  ${QWEN3_NATIVE_DIR}/src/common/json_floats.cpp
  ${QWEN3_NATIVE_DIR}/src/loader/json.cpp
  ${QWEN3_NATIVE_DIR}/src/loader/mapped_file.cpp
  ${QWEN3_NATIVE_DIR}/src/loader/safetensors.cpp
  ${QWEN3_NATIVE_DIR}/src/loader/pytorch_bin.cpp
  ${QWEN3_NATIVE_DIR}/src/loader/checkpoint.cpp
  ${QWEN3_NATIVE_DIR}/src/model/config.cpp
  ${QWEN3_NATIVE_DIR}/src/model/packed_batch.cpp
  ${QWEN3_NATIVE_DIR}/src/model/packed_input.cpp
  ${QWEN3_NATIVE_DIR}/src/model/pooling.cpp
  ${QWEN3_NATIVE_DIR}/src/model/pooler.cpp
  ${QWEN3_NATIVE_DIR}/src/model/dense.cpp
  ${QWEN3_NATIVE_DIR}/src/model/score_head.cpp
  ${QWEN3_NATIVE_DIR}/src/model/layers.cpp
  ${QWEN3_NATIVE_DIR}/src/model/attention.cpp
  ${QWEN3_NATIVE_DIR}/src/model/fused_ops.cpp
  ${QWEN3_NATIVE_DIR}/src/model/cuda_graphs.cpp
  ${QWEN3_NATIVE_DIR}/src/model/decoder_model.cpp
  ${QWEN3_NATIVE_DIR}/src/model/encoder_config.cpp
  ${QWEN3_NATIVE_DIR}/src/model/encoder_model.cpp
  ${QWEN3_NATIVE_DIR}/src/model/embedding_model.cpp
  ${QWEN3_NATIVE_DIR}/src/parallel/communicator.cpp
  ${QWEN3_NATIVE_DIR}/src/parallel/in_process_communicator.cpp
  ${QWEN3_NATIVE_DIR}/src/parallel/peer_all_reduce.cpp
  ${QWEN3_NATIVE_DIR}/src/parallel/nccl_communicator.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/job_queue.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/error_classification.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/device_context.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/replica.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/engine.cpp
  ${QWEN3_NATIVE_DIR}/src/runtime/devices.cpp
)

add_library(qwen3_core STATIC ${QWEN3_CORE_SOURCES})
target_include_directories(qwen3_core PUBLIC ${QWEN3_NATIVE_DIR}/src)
# TORCH_CXX_FLAGS (the C++ ABI flag) travels with the torch target to everything that links this.
target_link_libraries(qwen3_core PUBLIC ${TORCH_LIBRARIES} Threads::Threads ${QWEN3_JSON_TARGET})
set_target_properties(qwen3_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_options(qwen3_core PRIVATE -Wall -Wextra)
# One header set for every libtorch translation unit: builds on small machines stay quick.
target_precompile_headers(qwen3_core PRIVATE <ATen/ATen.h>)
if(QWEN3_WITH_CUDA)
  target_compile_definitions(qwen3_core PUBLIC QWEN3_WITH_CUDA)
  if(TARGET CUDA::cudart)
    target_link_libraries(qwen3_core PUBLIC CUDA::cudart)
  endif()
  # The CUDA kernels (kernels/*.cu) need nvcc; they include no libtorch header, so they build as
  # their own library with none of torch's compile flags. Architectures follow TORCH_CUDA_ARCH_LIST
  # ("8.0;9.0" -> 80;90), default 9.0 (H100/H200).
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "qwen3: libtorch has CUDA but no CUDA compiler was found (set CUDACXX)")
  endif()
  enable_language(CUDA)
  set(_qwen3_arch_list "$ENV{TORCH_CUDA_ARCH_LIST}")
  if(NOT _qwen3_arch_list)
    set(_qwen3_arch_list "9.0")
  endif()
  string(REPLACE " " ";" _qwen3_arch_list "${_qwen3_arch_list}")
  set(QWEN3_CUDA_ARCHITECTURES "")
  foreach(_arch IN LISTS _qwen3_arch_list)
    string(REPLACE "+PTX" "" _arch "${_arch}")
    string(REPLACE "." "" _arch "${_arch}")
    if(_arch)
      list(APPEND QWEN3_CUDA_ARCHITECTURES "${_arch}")
    endif()
  endforeach()
  message(STATUS "qwen3: fused kernels for CUDA architectures ${QWEN3_CUDA_ARCHITECTURES}")
  add_library(qwen3_kernels STATIC
    ${QWEN3_NATIVE_DIR}/src/kernels/fused_kernels.cu
    ${QWEN3_NATIVE_DIR}/src/kernels/peer_all_reduce.cu)
  target_include_directories(qwen3_kernels PRIVATE ${QWEN3_NATIVE_DIR}/src)
  set_target_properties(qwen3_kernels PROPERTIES
    CUDA_ARCHITECTURES "${QWEN3_CUDA_ARCHITECTURES}"
    CUDA_STANDARD 17
    CUDA_RUNTIME_LIBRARY Shared
    POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(qwen3_core PUBLIC qwen3_kernels)
endif()
if(QWEN3_WITH_NCCL)
  target_compile_definitions(qwen3_core PUBLIC QWEN3_WITH_NCCL)
  target_include_directories(qwen3_core SYSTEM PUBLIC ${NCCL_INCLUDE_DIR})
  target_link_libraries(qwen3_core PUBLIC ${NCCL_LIBRARY})
endif()
