// Assertions shared by the tests.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "common/error.h"

namespace qwen3::testing {

// Runs `f` and checks it throws qwen3::Error with `code` and a message containing every needle.
template <typename F>
void ExpectError(F&& f, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an error with code " << ErrorCodeName(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    const std::string message = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos)
          << "message \"" << message << "\" lacks \"" << needle << "\"";
    }
  }
}

}  // namespace qwen3::testing
