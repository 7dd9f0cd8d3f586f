#include <gtest/gtest.h>

#include "loader/json.h"

namespace qwen3::json {
namespace {

TEST(JsonTest, ParsesScalarsAndContainers) {
  Value v = Parse(R"({"a": 1, "b": -2.5e3, "c": [true, false, null], "d": {"e": "x"}})");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.Find("a")->as_int64(), 1);
  EXPECT_TRUE(v.Find("a")->is_integer());
  EXPECT_DOUBLE_EQ(v.Find("b")->as_double(), -2500.0);
  EXPECT_FALSE(v.Find("b")->is_integer());
  const Array& c = v.Find("c")->as_array();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_TRUE(c[0].as_bool());
  EXPECT_FALSE(c[1].as_bool());
  EXPECT_TRUE(c[2].is_null());
  EXPECT_EQ(v.Find("d")->Find("e")->as_string(), "x");
  EXPECT_EQ(v.Find("missing"), nullptr);
}

TEST(JsonTest, KeepsLargeIntegersExact) {
  Value v = Parse("[9007199254740993, 18446744073709551616]");
  EXPECT_EQ(v.as_array()[0].as_int64(), 9007199254740993LL);
  EXPECT_FALSE(v.as_array()[1].is_integer());  // beyond int64: a double
}

TEST(JsonTest, DecodesEscapesAndUnicode) {
  Value v = Parse(R"(["a\"b\\c\/d\n\t", "\u00e9\u4e2d", "\ud83d\ude00"])");
  EXPECT_EQ(v.as_array()[0].as_string(), "a\"b\\c/d\n\t");
  EXPECT_EQ(v.as_array()[1].as_string(), "\xc3\xa9\xe4\xb8\xad");
  EXPECT_EQ(v.as_array()[2].as_string(), "\xf0\x9f\x98\x80");
}

TEST(JsonTest, RejectsMalformedDocuments) {
  for (const char* text :
       {"", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "tru", "01", "1.", "-", "\"abc", "\"\\x\"",
        "\"\\ud800\"", "[1] [2]", "{\"a\":1}}", "nan", "\"a\nb\"", "1e999"}) {
    EXPECT_THROW(Parse(text), ParseError) << text;
  }
}

TEST(JsonTest, RejectsDuplicateKeys) { EXPECT_THROW(Parse(R"({"a": 1, "a": 2})"), ParseError); }

TEST(JsonTest, RejectsDeepNesting) {
  EXPECT_THROW(Parse(std::string(1000, '[') + std::string(1000, ']')), ParseError);
  EXPECT_NO_THROW(Parse(std::string(100, '[') + std::string(100, ']')));
}

TEST(JsonTest, TypedAccessorsCheckTypes) {
  Value v = Parse(R"({"s": "x", "f": 1.5})");
  EXPECT_THROW(v.Find("s")->as_int64(), TypeError);
  EXPECT_THROW(v.Find("f")->as_int64(), TypeError);
  EXPECT_THROW(v.as_array(), TypeError);
}

}  // namespace
}  // namespace qwen3::json
