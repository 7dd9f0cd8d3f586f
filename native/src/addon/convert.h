// Conversions between JS values and the engine's plain C++ types, on the JS thread only.
// Argument errors are thrown as Napi::TypeError (wrong JS type) or Napi::RangeError (bad value),
// each with `code: 'INVALID_ARGUMENT'`.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/engine.h"

namespace qwen3::addon {

// An Error carrying `code` (EngineErrorCode); kInvalidArgument becomes a RangeError.
Napi::Error MakeError(Napi::Env env, ErrorCode code, const std::string& message);
Napi::Error MakeError(Napi::Env env, const Error& error);
Napi::Error MakeTypeError(Napi::Env env, const std::string& message);
Napi::Error MakeRangeError(Napi::Env env, const std::string& message);

// The elements of an Int32Array (anything else is a TypeError).
std::vector<int32_t> ToInt32Vector(const Napi::Value& value, const char* name);
// An array of non-negative integer device ordinals.
std::vector<int> ToDeviceIds(const Napi::Value& value, const char* name);
EngineOptions ToEngineOptions(const Napi::Value& value);
// allReduceCheck's options, { peerAllReduce?: boolean } or undefined: its peerAllReduce (true).
bool ToAllReduceCheckPeer(const Napi::Value& value);

Napi::Object ToJs(Napi::Env env, const EngineInfo& info);
Napi::Object ToJs(Napi::Env env, const HealthStatus& health);
Napi::Object ToJs(Napi::Env env, const BuildInfo& info);
Napi::Array ToJs(Napi::Env env, const std::vector<CudaDeviceInfo>& devices);
Napi::Object ToJs(Napi::Env env, const AllReduceCheckResult& result);

}  // namespace qwen3::addon
