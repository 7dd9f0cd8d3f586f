#include "common/json_floats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace qwen3 {
namespace {

std::string Json(const std::vector<float>& values) {
  std::string text;
  AppendJsonFloatArray(values.data(), values.size(), &text);
  return text;
}

// Splits "[a,b,...]" into its items.
std::vector<std::string> Items(const std::string& text) {
  EXPECT_EQ(text.front(), '[');
  EXPECT_EQ(text.back(), ']');
  std::vector<std::string> items;
  std::string current;
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    if (text[i] == ',') {
      items.push_back(current);
      current.clear();
    } else {
      current.push_back(text[i]);
    }
  }
  if (text.size() > 2) items.push_back(current);
  return items;
}

uint32_t Bits(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

TEST(JsonFloatsTest, EveryValueReadsBackAsTheSameFloat) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.03f);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::vector<float> values = {0.0f,
                               1.0f,
                               -1.0f,
                               0.1f,
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::max(),
                               -std::numeric_limits<float>::max()};
  for (int i = 0; i < 5000; ++i) values.push_back(normal(rng));
  while (values.size() < 20000) {
    const uint32_t bits = any_bits(rng);
    float value = 0;
    std::memcpy(&value, &bits, sizeof(value));
    if (std::isfinite(value)) values.push_back(value);
  }
  const std::vector<std::string> items = Items(Json(values));
  ASSERT_EQ(items.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const float back = std::strtof(items[i].c_str(), nullptr);
    ASSERT_EQ(Bits(back), Bits(values[i])) << items[i];
    ASSERT_LE(items[i].size(), 15u) << items[i];
  }
}

TEST(JsonFloatsTest, WritesTheShortestDigitsAndNullForWhatJsonCannotHold) {
  EXPECT_EQ(Json({}), "[]");
  EXPECT_EQ(Json({0.5f, -0.25f, 3.0f}), "[0.5,-0.25,3]");
  EXPECT_EQ(Json({0.0023064255f}), "[0.0023064255]");
  EXPECT_EQ(Json({std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), 1.0f}),
            "[null,null,null,1]");
  std::string text = "prefix";
  const float one = 1.0f;
  AppendJsonFloatArray(&one, 1, &text);
  EXPECT_EQ(text, "prefix[1]");
}

}  // namespace
}  // namespace qwen3
