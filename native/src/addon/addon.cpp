// Module entry point of qwen3_embed.node: the Engine class and the module-level functions of
// docs/architecture.md.
#include <napi.h>

#include <optional>
#include <string>
#include <vector>

#include "addon/convert.h"
#include "addon/engine_wrap.h"
#include "common/json_floats.h"
#include "runtime/engine.h"

namespace qwen3::addon {

namespace {

Napi::Value BuildInfoJs(const Napi::CallbackInfo& info) { return ToJs(info.Env(), GetBuildInfo()); }

Napi::Value CudaDevicesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return ToJs(env, ListCudaDevices());
  } catch (const Error& e) {
    throw MakeError(env, e);
  } catch (const std::exception& e) {
    throw MakeError(env, ErrorCode::kDeviceFailed, e.what());
  }
}

// Runs the NCCL check on the libuv thread pool (it takes well under a second once NCCL is up).
class AllReduceCheckWorker : public Napi::AsyncWorker {
 public:
  AllReduceCheckWorker(Napi::Env env, std::vector<int> device_ids, bool peer_all_reduce)
      : Napi::AsyncWorker(env, "qwen3.allReduceCheck"),
        deferred_(Napi::Promise::Deferred::New(env)),
        device_ids_(std::move(device_ids)),
        peer_all_reduce_(peer_all_reduce) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = RunAllReduceCheck(device_ids_, peer_all_reduce_);
    } catch (const Error& e) {
      error_ = e;
    } catch (const std::exception& e) {
      error_ = Error(ErrorCode::kDeviceFailed, e.what());
    } catch (...) {
      error_ = Error(ErrorCode::kDeviceFailed, "unknown error in the all-reduce check");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (error_) {
      deferred_.Reject(MakeError(env, *error_).Value());
    } else {
      deferred_.Resolve(ToJs(env, result_));
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<int> device_ids_;
  bool peer_all_reduce_;
  AllReduceCheckResult result_;
  std::optional<Error> error_;
};

Napi::Value AllReduceCheckJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> ids;
  bool peer = true;
  try {
    ids = ToDeviceIds(info[0], "deviceIds");
    peer = ToAllReduceCheckPeer(info[1]);
  } catch (const Napi::Error& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
  auto* worker = new AllReduceCheckWorker(env, std::move(ids), peer);
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself when done
  return promise;
}

// floatArrayJson(values: Float32Array): string. Synchronous: a 2560-float row takes ~60 us.
Napi::Value FloatArrayJsonJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw MakeTypeError(env, "values must be a Float32Array");
  }
  const Napi::Float32Array values = info[0].As<Napi::Float32Array>();
  std::string text;
  AppendJsonFloatArray(values.Data(), values.ElementLength(), &text);
  // The text is ASCII, so Latin-1 is its exact encoding (and the fastest way into V8).
  napi_value result = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_string_latin1(env, text.data(), text.size(), &result),
                       Napi::Value());
  return Napi::Value(env, result);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::DefineClass(env));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfoJs, "buildInfo"));
  exports.Set("cudaDevices", Napi::Function::New(env, CudaDevicesJs, "cudaDevices"));
  exports.Set("allReduceCheck", Napi::Function::New(env, AllReduceCheckJs, "allReduceCheck"));
  exports.Set("floatArrayJson", Napi::Function::New(env, FloatArrayJsonJs, "floatArrayJson"));
  return exports;
}

}  // namespace

}  // namespace qwen3::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return qwen3::addon::Init(env, exports);
}

NODE_API_MODULE(qwen3_embed, InitModule)
