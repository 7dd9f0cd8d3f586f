#include "loader/json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

namespace qwen3::json {

namespace {

constexpr int kMaxDepth = 128;

// nlohmann's messages start with "[json.exception.parse_error.101] ": the rest says where and why.
std::string WithoutExceptionId(const char* what) {
  std::string message(what);
  if (!message.empty() && message.front() == '[') {
    const size_t end = message.find("] ");
    if (end != std::string::npos) message.erase(0, end + 2);
  }
  return message;
}

}  // namespace

Value Parse(std::string_view text) {
  // The keys seen so far in each open object, innermost last.
  std::vector<std::unordered_set<std::string>> keys;
  const Value::parser_callback_t check = [&keys](int depth, Value::parse_event_t event,
                                                 Value& parsed) {
    switch (event) {
      case Value::parse_event_t::object_start:
      case Value::parse_event_t::array_start:
        // depth counts the containers already open around this one.
        if (depth >= kMaxDepth) throw ParseError("JSON nested too deeply");
        if (event == Value::parse_event_t::object_start) keys.emplace_back();
        break;
      case Value::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(key).second) throw ParseError("duplicate key \"" + key + "\"");
        break;
      }
      case Value::parse_event_t::object_end:
        keys.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Value::parse(text.begin(), text.end(), check);
  } catch (const Value::exception& e) {
    // parse_error (syntax, with line and column) or out_of_range (a number beyond double).
    throw ParseError(WithoutExceptionId(e.what()));
  }
}

const Value* Find(const Value& object, const std::string& key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

int64_t AsInt64(const Value& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw TypeError("integer " + std::to_string(u) + " is out of range");
    }
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) {
    const auto d = value.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15) {
      return static_cast<int64_t>(d);
    }
    throw TypeError("expected an integer, got " + value.dump());
  }
  throw TypeError(std::string("expected an integer, got ") + value.type_name());
}

}  // namespace qwen3::json
