#include "runtime/error_classification.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <string>

namespace qwen3 {
namespace {

template <typename E>
Error ClassifyThrown(const E& e) {
  return ClassifyError(std::make_exception_ptr(e));
}

c10::Error TorchError(const std::string& message) {
  return c10::Error(c10::SourceLocation{__func__, __FILE__, __LINE__}, message);
}

TEST(ErrorClassificationTest, KeepsEngineErrors) {
  const Error e = ClassifyThrown(Error(ErrorCode::kInvalidArgument, "bad batch"));
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_STREQ(e.what(), "bad batch");
}

TEST(ErrorClassificationTest, OutOfMemoryKeepsTheReplica) {
  EXPECT_EQ(ClassifyThrown(std::bad_alloc()).code(), ErrorCode::kOutOfMemory);
  EXPECT_EQ(ClassifyThrown(TorchError("CUDA out of memory. Tried to allocate 2.00 GiB")).code(),
            ErrorCode::kOutOfMemory);
  EXPECT_EQ(
      ClassifyThrown(TorchError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")).code(),
      ErrorCode::kOutOfMemory);
  EXPECT_EQ(
      ClassifyThrown(c10::OutOfMemoryError(c10::SourceLocation{"f", "file.cpp", 1}, "oom")).code(),
      ErrorCode::kOutOfMemory);
}

TEST(ErrorClassificationTest, DeviceErrorsTakeTheReplicaOut) {
  for (const char* message :
       {"CUDA error: an illegal memory access was encountered", "CUDA driver error: unknown",
        "CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx", "cuDNN error: X"}) {
    EXPECT_EQ(ClassifyThrown(TorchError(message)).code(), ErrorCode::kDeviceFailed) << message;
  }
}

TEST(ErrorClassificationTest, AnythingElseIsInternal) {
  EXPECT_EQ(ClassifyThrown(TorchError("shape mismatch")).code(), ErrorCode::kInternal);
  const Error e = ClassifyThrown(std::runtime_error("boom"));
  EXPECT_EQ(e.code(), ErrorCode::kInternal);
  EXPECT_STREQ(e.what(), "boom");
  EXPECT_EQ(ClassifyError(std::make_exception_ptr(42)).code(), ErrorCode::kInternal);
}

}  // namespace
}  // namespace qwen3
