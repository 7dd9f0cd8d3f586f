// A small, strict JSON reader for checkpoint metadata (config.json, safetensors headers, shard
// indexes). Values are immutable; containers are shared so copies are cheap. Duplicate object keys
// are rejected: in a safetensors header they would make a tensor ambiguous.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qwen3::json {

class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& message, size_t offset)
      : std::runtime_error(message + " at byte " + std::to_string(offset)), offset_(offset) {}
  size_t offset() const noexcept { return offset_; }

 private:
  size_t offset_;
};

// Thrown by the typed accessors when a value has another type or range than the caller needs.
class TypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;

class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Value() = default;
  static Value Null() { return Value(); }
  static Value Bool(bool b);
  static Value Integer(int64_t i);
  static Value Double(double d);
  static Value String(std::string s);
  static Value MakeArray(Array items);
  // Keys must be unique (the parser guarantees it).
  static Value MakeObject(std::vector<Member> members);

  Type type() const noexcept { return type_; }
  bool is_null() const noexcept { return type_ == Type::kNull; }
  bool is_bool() const noexcept { return type_ == Type::kBool; }
  bool is_number() const noexcept { return type_ == Type::kNumber; }
  bool is_integer() const noexcept { return type_ == Type::kNumber && is_integer_; }
  bool is_string() const noexcept { return type_ == Type::kString; }
  bool is_array() const noexcept { return type_ == Type::kArray; }
  bool is_object() const noexcept { return type_ == Type::kObject; }

  bool as_bool() const;
  double as_double() const;
  // The exact value of an integer literal (no fraction or exponent) that fits int64.
  int64_t as_int64() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const std::vector<Member>& as_object() const;

  // Object member by key, or nullptr when absent (or when this is not an object).
  const Value* Find(std::string_view key) const;

  static const char* TypeName(Type type) noexcept;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_integer_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const Array> array_;
  std::shared_ptr<const std::vector<Member>> object_;
};

// Parses one JSON document (RFC 8259), rejecting trailing content, duplicate keys and nesting
// deeper than 128 levels.
Value Parse(std::string_view text);

}  // namespace qwen3::json
