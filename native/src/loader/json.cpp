#include "loader/json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace qwen3::json {

Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::Integer(int64_t i) {
  Value v;
  v.type_ = Type::kNumber;
  v.is_integer_ = true;
  v.int_ = i;
  v.double_ = static_cast<double>(i);
  return v;
}

Value Value::Double(double d) {
  Value v;
  v.type_ = Type::kNumber;
  v.double_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.string_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::MakeArray(Array items) {
  Value v;
  v.type_ = Type::kArray;
  v.array_ = std::make_shared<const Array>(std::move(items));
  return v;
}

Value Value::MakeObject(std::vector<Member> members) {
  Value v;
  v.type_ = Type::kObject;
  v.object_ = std::make_shared<const std::vector<Member>>(std::move(members));
  return v;
}

const char* Value::TypeName(Type type) noexcept {
  switch (type) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "boolean";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "unknown";
}

namespace {

[[noreturn]] void WrongType(Value::Type want, Value::Type got) {
  throw TypeError(std::string("expected ") + Value::TypeName(want) + ", got " +
                  Value::TypeName(got));
}

}  // namespace

bool Value::as_bool() const {
  if (type_ != Type::kBool) WrongType(Type::kBool, type_);
  return bool_;
}

double Value::as_double() const {
  if (type_ != Type::kNumber) WrongType(Type::kNumber, type_);
  return double_;
}

int64_t Value::as_int64() const {
  if (type_ != Type::kNumber) WrongType(Type::kNumber, type_);
  if (!is_integer_) {
    // Accept 4.0 style integers written by some tools, but nothing fractional or out of range.
    if (std::isfinite(double_) && std::floor(double_) == double_ && std::fabs(double_) < 9.0e15) {
      return static_cast<int64_t>(double_);
    }
    throw TypeError("expected an integer, got " + std::to_string(double_));
  }
  return int_;
}

const std::string& Value::as_string() const {
  if (type_ != Type::kString) WrongType(Type::kString, type_);
  return *string_;
}

const Array& Value::as_array() const {
  if (type_ != Type::kArray) WrongType(Type::kArray, type_);
  return *array_;
}

const std::vector<Member>& Value::as_object() const {
  if (type_ != Type::kObject) WrongType(Type::kObject, type_);
  return *object_;
}

const Value* Value::Find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& member : *object_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 128;

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Value ParseDocument() {
    SkipWhitespace();
    Value v = ParseValue(0);
    SkipWhitespace();
    if (pos_ != text_.size()) Fail("unexpected content after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void Fail(const std::string& message) const { throw ParseError(message, pos_); }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipWhitespace() {
    while (!AtEnd()) {
      char c = Peek();
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void Expect(char c) {
    if (AtEnd() || Peek() != c) Fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  void ExpectLiteral(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) Fail("invalid literal");
    pos_ += literal.size();
  }

  Value ParseValue(int depth) {
    if (depth > kMaxDepth) Fail("JSON nested too deeply");
    if (AtEnd()) Fail("unexpected end of input");
    switch (Peek()) {
      case '{':
        return ParseObject(depth);
      case '[':
        return ParseArray(depth);
      case '"':
        return Value::String(ParseString());
      case 't':
        ExpectLiteral("true");
        return Value::Bool(true);
      case 'f':
        ExpectLiteral("false");
        return Value::Bool(false);
      case 'n':
        ExpectLiteral("null");
        return Value::Null();
      default:
        return ParseNumber();
    }
  }

  Value ParseObject(int depth) {
    Expect('{');
    std::vector<Member> members;
    std::unordered_set<std::string> keys;
    SkipWhitespace();
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return Value::MakeObject(std::move(members));
    }
    while (true) {
      SkipWhitespace();
      if (AtEnd() || Peek() != '"') Fail("expected a string key");
      size_t key_pos = pos_;
      std::string key = ParseString();
      if (!keys.insert(key).second) {
        throw ParseError("duplicate key \"" + key + "\"", key_pos);
      }
      SkipWhitespace();
      Expect(':');
      SkipWhitespace();
      Value value = ParseValue(depth + 1);
      members.emplace_back(std::move(key), std::move(value));
      SkipWhitespace();
      if (AtEnd()) Fail("unterminated object");
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      Expect('}');
      return Value::MakeObject(std::move(members));
    }
  }

  Value ParseArray(int depth) {
    Expect('[');
    Array items;
    SkipWhitespace();
    if (!AtEnd() && Peek() == ']') {
      ++pos_;
      return Value::MakeArray(std::move(items));
    }
    while (true) {
      SkipWhitespace();
      items.push_back(ParseValue(depth + 1));
      SkipWhitespace();
      if (AtEnd()) Fail("unterminated array");
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      Expect(']');
      return Value::MakeArray(std::move(items));
    }
  }

  unsigned ParseHex4() {
    if (text_.size() - pos_ < 4) Fail("truncated \\u escape");
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      value <<= 4;
      if (c >= '0' && c <= '9') {
        value |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        value |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        value |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        Fail("invalid \\u escape");
      }
    }
    return value;
  }

  static void AppendUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string ParseString() {
    Expect('"');
    std::string out;
    while (true) {
      if (AtEnd()) Fail("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) {
        --pos_;
        Fail("control character in string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (AtEnd()) Fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = ParseHex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") Fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            unsigned low = ParseHex4();
            if (low < 0xDC00 || low > 0xDFFF) Fail("invalid surrogate pair in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            Fail("unpaired surrogate in \\u escape");
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          --pos_;
          Fail("invalid escape");
      }
    }
  }

  Value ParseNumber() {
    const size_t start = pos_;
    bool integral = true;
    if (!AtEnd() && Peek() == '-') ++pos_;
    if (AtEnd()) Fail("invalid number");
    if (Peek() == '0') {
      ++pos_;
    } else if (Peek() >= '1' && Peek() <= '9') {
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') ++pos_;
    } else {
      Fail("invalid value");
    }
    if (!AtEnd() && Peek() == '.') {
      integral = false;
      ++pos_;
      if (AtEnd() || Peek() < '0' || Peek() > '9') Fail("invalid number");
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') ++pos_;
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      integral = false;
      ++pos_;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      if (AtEnd() || Peek() < '0' || Peek() > '9') Fail("invalid number");
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      int64_t value = 0;
      auto result = std::from_chars(first, last, value);
      if (result.ec == std::errc() && result.ptr == last) return Value::Integer(value);
      // Out of int64 range: keep it as a double.
    }
    double value = 0;
    auto result = std::from_chars(first, last, value);
    if (result.ec == std::errc::result_out_of_range) {
      // from_chars leaves the value unset on overflow; JSON has no infinity, so refuse it.
      throw ParseError("number out of range", start);
    }
    if (result.ec != std::errc() || result.ptr != last) throw ParseError("invalid number", start);
    return Value::Double(value);
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Value Parse(std::string_view text) { return Parser(text).ParseDocument(); }

}  // namespace qwen3::json
