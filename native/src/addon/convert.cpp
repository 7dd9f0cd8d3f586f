#include "addon/convert.h"

#include <cmath>
#include <limits>

namespace qwen3::addon {

namespace {

Napi::Error WithCode(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  return error;
}

bool IsInteger(const Napi::Value& v, double min, double max, double* out) {
  if (!v.IsNumber()) return false;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) return false;
  *out = d;
  return true;
}

std::string RequireString(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw MakeTypeError(env, std::string("options.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int OptionalInt(Napi::Env env, const Napi::Object& o, const char* key, int fallback, int min) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw MakeTypeError(env, std::string("options.") + key + " must be a number");
  double d = 0;
  if (!IsInteger(v, min, std::numeric_limits<int>::max(), &d)) {
    throw MakeRangeError(
        env, std::string("options.") + key + " must be an integer >= " + std::to_string(min));
  }
  return static_cast<int>(d);
}

bool OptionalBool(Napi::Env env, const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean())
    throw MakeTypeError(env, std::string("options.") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

}  // namespace

Napi::Error MakeError(Napi::Env env, ErrorCode code, const std::string& message) {
  if (code == ErrorCode::kInvalidArgument) return MakeRangeError(env, message);
  return WithCode(Napi::Error::New(env, message), ErrorCodeName(code));
}

Napi::Error MakeError(Napi::Env env, const Error& error) {
  return MakeError(env, error.code(), error.what());
}

Napi::Error MakeTypeError(Napi::Env env, const std::string& message) {
  return WithCode(Napi::TypeError::New(env, message), ErrorCodeName(ErrorCode::kInvalidArgument));
}

Napi::Error MakeRangeError(Napi::Env env, const std::string& message) {
  return WithCode(Napi::RangeError::New(env, message), ErrorCodeName(ErrorCode::kInvalidArgument));
}

std::vector<int32_t> ToInt32Vector(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw MakeTypeError(value.Env(), std::string(name) + " must be an Int32Array");
  }
  Napi::Int32Array array = value.As<Napi::Int32Array>();
  const int32_t* data = array.Data();
  return std::vector<int32_t>(data, data + array.ElementLength());
}

std::vector<int> ToDeviceIds(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw MakeTypeError(env, std::string(name) + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int> ids;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsNumber()) {
      throw MakeTypeError(env, std::string(name) + "[" + std::to_string(i) + "] must be a number");
    }
    double d = 0;
    if (!IsInteger(item, 0, 1 << 20, &d)) {
      throw MakeRangeError(
          env, std::string(name) + "[" + std::to_string(i) + "] must be a non-negative integer");
    }
    ids.push_back(static_cast<int>(d));
  }
  return ids;
}

EngineOptions ToEngineOptions(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || value.IsArray() || value.IsFunction()) {
    throw MakeTypeError(env, "options must be an object");
  }
  Napi::Object o = value.As<Napi::Object>();
  EngineOptions options;
  options.model_path = RequireString(env, o, "modelPath");
  if (options.model_path.empty()) throw MakeRangeError(env, "options.modelPath is empty");

  const std::string device = RequireString(env, o, "device");
  if (device == "cpu") {
    options.device = DeviceKind::kCpu;
  } else if (device == "cuda") {
    options.device = DeviceKind::kCuda;
  } else {
    throw MakeRangeError(env, "options.device must be 'cpu' or 'cuda', got '" + device + "'");
  }

  const std::string dtype = RequireString(env, o, "dtype");
  if (dtype == "float32") {
    options.dtype = DType::kFloat32;
  } else if (dtype == "bfloat16") {
    options.dtype = DType::kBFloat16;
  } else if (dtype == "float16") {
    options.dtype = DType::kFloat16;
  } else {
    throw MakeRangeError(
        env, "options.dtype must be 'float32', 'bfloat16' or 'float16', got '" + dtype + "'");
  }

  Napi::Value ids = o.Get("deviceIds");
  if (!ids.IsUndefined() && !ids.IsNull())
    options.device_ids = ToDeviceIds(ids, "options.deviceIds");
  options.tensor_parallel_size = OptionalInt(env, o, "tensorParallelSize", 1, 1);
  options.cpu_threads = OptionalInt(env, o, "cpuThreads", 0, 0);
  options.cuda_graph_max_tokens = OptionalInt(env, o, "cudaGraphMaxTokens", 512, 0);
  options.peer_all_reduce = OptionalBool(env, o, "peerAllReduce", true);
  options.device_spin_us = static_cast<uint32_t>(
      OptionalInt(env, o, "deviceSpinUs", static_cast<int>(options.device_spin_us), 0));
  options.idle_spin_us = static_cast<uint32_t>(OptionalInt(env, o, "idleSpinUs", 0, 0));

  Napi::Value pooling = o.Get("pooling");
  if (!pooling.IsUndefined() && !pooling.IsNull()) {
    options.pooling = RequireString(env, o, "pooling");
    if (options.pooling != "lasttoken" && options.pooling != "cls" && options.pooling != "mean") {
      throw MakeRangeError(env, "options.pooling must be 'lasttoken', 'cls' or 'mean', got '" +
                                    options.pooling + "'");
    }
  }
  Napi::Value head = o.Get("head");
  if (!head.IsUndefined() && !head.IsNull()) {
    options.head = RequireString(env, o, "head");
    if (options.head != "embedding" && options.head != "yes-no" && options.head != "classifier") {
      throw MakeRangeError(
          env,
          "options.head must be 'embedding', 'yes-no' or 'classifier', got '" + options.head + "'");
    }
  }
  Napi::Value yes_no = o.Get("yesNoTokenIds");
  if (!yes_no.IsUndefined() && !yes_no.IsNull()) {
    const std::vector<int> ids = ToDeviceIds(yes_no, "options.yesNoTokenIds");
    if (ids.size() != 2) {
      throw MakeRangeError(env, "options.yesNoTokenIds must be [yes, no]: two token ids");
    }
    options.yes_token_id = ids[0];
    options.no_token_id = ids[1];
  }
  // A score head reads the raw row: its default is not to normalise.
  options.normalize = OptionalBool(env, o, "normalize", options.head == "embedding");
  Napi::Value dense = o.Get("denseLayers");
  if (!dense.IsUndefined() && !dense.IsNull()) {
    if (!dense.IsArray()) throw MakeTypeError(env, "options.denseLayers must be an array");
    Napi::Array array = dense.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); ++i) {
      Napi::Value item = array.Get(i);
      const std::string name = "options.denseLayers[" + std::to_string(i) + "]";
      if (!item.IsString()) throw MakeTypeError(env, name + " must be a string");
      std::string path = item.As<Napi::String>().Utf8Value();
      if (path.empty()) throw MakeRangeError(env, name + " is empty");
      options.dense_layers.push_back(std::move(path));
    }
  }
  return options;
}

Napi::Object ToJs(Napi::Env env, const EngineInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("modelPath", info.model_path);
  o.Set("modelType", info.model_type);
  o.Set("hiddenSize", static_cast<double>(info.hidden_size));
  o.Set("numLayers", static_cast<double>(info.num_layers));
  o.Set("numAttentionHeads", static_cast<double>(info.num_attention_heads));
  o.Set("numKeyValueHeads", static_cast<double>(info.num_key_value_heads));
  o.Set("headDim", static_cast<double>(info.head_dim));
  o.Set("intermediateSize", static_cast<double>(info.intermediate_size));
  o.Set("vocabSize", static_cast<double>(info.vocab_size));
  o.Set("maxPositionEmbeddings", static_cast<double>(info.max_position_embeddings));
  o.Set("outputDimension", static_cast<double>(info.output_dimension));
  o.Set("head", info.head);
  o.Set("parameters", static_cast<double>(info.parameters));
  o.Set("device", DeviceKindName(info.device));
  o.Set("dtype", DTypeName(info.dtype));
  o.Set("tensorParallelSize", info.tensor_parallel_size);
  o.Set("replicas", info.replicas);
  o.Set("cudaGraphMaxTokens", static_cast<double>(info.cuda_graph_max_tokens));
  o.Set("peerAllReduce", info.peer_all_reduce);
  Napi::Array devices = Napi::Array::New(env, info.devices.size());
  for (size_t i = 0; i < info.devices.size(); ++i) {
    const DeviceInfo& d = info.devices[i];
    Napi::Object item = Napi::Object::New(env);
    item.Set("index", d.index);
    item.Set("name", d.name);
    item.Set("totalMemoryBytes", static_cast<double>(d.total_memory_bytes));
    item.Set("usedMemoryBytes", static_cast<double>(d.used_memory_bytes));
    item.Set("replica", d.replica);
    item.Set("rank", d.rank);
    devices.Set(static_cast<uint32_t>(i), item);
  }
  o.Set("devices", devices);
  return o;
}

Napi::Object ToJs(Napi::Env env, const HealthStatus& health) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", health.ok);
  if (!health.ok) o.Set("reason", health.reason);
  return o;
}

Napi::Object ToJs(Napi::Env env, const BuildInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", info.torch_version);
  o.Set("cuda", info.cuda);
  o.Set("nccl", info.nccl);
  o.Set("flashAttention", info.flash_attention);
  return o;
}

Napi::Array ToJs(Napi::Env env, const std::vector<CudaDeviceInfo>& devices) {
  Napi::Array array = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    Napi::Object item = Napi::Object::New(env);
    item.Set("index", devices[i].index);
    item.Set("name", devices[i].name);
    item.Set("totalMemoryBytes", static_cast<double>(devices[i].total_memory_bytes));
    item.Set("freeMemoryBytes", static_cast<double>(devices[i].free_memory_bytes));
    array.Set(static_cast<uint32_t>(i), item);
  }
  return array;
}

bool ToAllReduceCheckPeer(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (value.IsUndefined()) return true;
  if (!value.IsObject()) throw MakeTypeError(env, "options must be an object");
  return OptionalBool(env, value.As<Napi::Object>(), "peerAllReduce", true);
}

Napi::Object ToJs(Napi::Env env, const AllReduceCheckResult& result) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", result.ok);
  o.Set("ms", result.ms);
  o.Set("bytes", static_cast<double>(result.bytes));
  o.Set("smallPath", result.small_path);
  o.Set("smallBytes", static_cast<double>(result.small_bytes));
  o.Set("smallUs", result.small_us);
  return o;
}

}  // namespace qwen3::addon
