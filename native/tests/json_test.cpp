#include "loader/json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace qwen3::json {
namespace {

TEST(JsonTest, ParsesScalarsAndContainers) {
  Value v = Parse(R"({"a": 1, "b": -2.5e3, "c": [true, false, null], "d": {"e": "x"}})");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(AsInt64(*Find(v, "a")), 1);
  EXPECT_TRUE(Find(v, "a")->is_number_integer());
  EXPECT_DOUBLE_EQ(Find(v, "b")->get<double>(), -2500.0);
  EXPECT_FALSE(Find(v, "b")->is_number_integer());
  const Value& c = *Find(v, "c");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_TRUE(c[0].get<bool>());
  EXPECT_FALSE(c[1].get<bool>());
  EXPECT_TRUE(c[2].is_null());
  EXPECT_EQ(Find(*Find(v, "d"), "e")->get<std::string>(), "x");
  EXPECT_EQ(Find(v, "missing"), nullptr);
  EXPECT_EQ(Find(c, "a"), nullptr);  // not an object
}

TEST(JsonTest, KeepsLargeIntegersExact) {
  Value v = Parse("[9007199254740993, -9007199254740993, 18446744073709551616]");
  EXPECT_EQ(AsInt64(v[0]), 9007199254740993LL);
  EXPECT_EQ(AsInt64(v[1]), -9007199254740993LL);
  EXPECT_FALSE(v[2].is_number_integer());  // beyond uint64: a double
}

TEST(JsonTest, DecodesEscapesAndUnicode) {
  Value v = Parse(R"(["a\"b\\c\/d\n\t", "\u00e9\u4e2d", "\ud83d\ude00"])");
  EXPECT_EQ(v[0].get<std::string>(), "a\"b\\c/d\n\t");
  EXPECT_EQ(v[1].get<std::string>(), "\xc3\xa9\xe4\xb8\xad");
  EXPECT_EQ(v[2].get<std::string>(), "\xf0\x9f\x98\x80");
}

TEST(JsonTest, RejectsMalformedDocuments) {
  for (const char* text :
       {"", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "tru", "01", "1.", "-", "\"abc", "\"\\x\"",
        "\"\\ud800\"", "[1] [2]", "{\"a\":1}}", "nan", "\"a\nb\"", "1e999", "[1] // c"}) {
    EXPECT_THROW(Parse(text), ParseError) << text;
  }
}

TEST(JsonTest, SaysWhereADocumentIsBroken) {
  try {
    Parse("{\"a\": 1,\n \"b\": }");
    FAIL() << "no error";
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("json.exception"), std::string::npos) << e.what();
  }
}

TEST(JsonTest, RejectsDuplicateKeys) {
  EXPECT_THROW(Parse(R"({"a": 1, "a": 2})"), ParseError);
  EXPECT_THROW(Parse(R"({"x": {"w": {"a": 1, "b": 2, "a": 3}}})"), ParseError);
  try {
    Parse(R"({"t": {"dtype": "F32", "dtype": "BF16"}})");
    FAIL() << "no error";
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate key \"dtype\""), std::string::npos) << e.what();
  }
  // The same key in sibling or nested objects is not a duplicate.
  EXPECT_NO_THROW(Parse(R"({"a": {"a": 1}, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]})"));
}

TEST(JsonTest, RejectsDeepNesting) {
  EXPECT_THROW(Parse(std::string(1000, '[') + std::string(1000, ']')), ParseError);
  EXPECT_THROW(Parse(std::string(200, '[') + "{}" + std::string(200, ']')), ParseError);
  EXPECT_NO_THROW(Parse(std::string(100, '[') + std::string(100, ']')));
}

TEST(JsonTest, AsInt64ChecksTypeAndRange) {
  Value v = Parse(R"({"s": "x", "f": 1.5, "w": 4.0, "big": 9223372036854775808})");
  EXPECT_THROW(AsInt64(*Find(v, "s")), TypeError);
  EXPECT_THROW(AsInt64(*Find(v, "f")), TypeError);
  EXPECT_EQ(AsInt64(*Find(v, "w")), 4);
  EXPECT_THROW(AsInt64(*Find(v, "big")), TypeError);
}

}  // namespace
}  // namespace qwen3::json
