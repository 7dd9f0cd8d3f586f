// Checkpoint metadata (config.json, safetensors headers, shard indexes) is JSON read by
// nlohmann-json. Parse adds the rules it lacks: a duplicate object key is an error (in a
// safetensors header it would make a tensor ambiguous; nlohmann keeps the last silently), and so is
// nesting deeper than 128 levels. This header declares nlohmann's types only; code that reads
// values includes <nlohmann/json.hpp>.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace qwen3::json {

using Value = nlohmann::json;

// A document that is not JSON, or breaks one of the rules above; the message says where.
class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by AsInt64 when a value has another type or range than the caller needs.
class TypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses one JSON document (RFC 8259), rejecting trailing content, duplicate keys and nesting
// deeper than 128 levels.
Value Parse(std::string_view text);

// Object member by key, or nullptr when absent (or when `object` is not an object).
const Value* Find(const Value& object, const std::string& key);

// The exact value of an integer that fits int64; also 4.0-style numbers some tools write, but
// nothing fractional or out of range.
int64_t AsInt64(const Value& value);

}  // namespace qwen3::json
