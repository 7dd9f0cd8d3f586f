// The JS class `Engine` (docs/architecture.md): a thin wrapper over qwen3::Engine.
//
// Every method runs on the JS thread and copies its arguments into plain C++ values ("baton")
// before any work leaves it; engine threads never touch Node-API. Results come back through a
// thread-safe function and settle a promise on the JS thread. Each method checks the state first,
// so a disposed engine rejects every call with ENGINE_DISPOSED.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/engine.h"

namespace qwen3::addon {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

 private:
  enum class State { kEmpty, kLoading, kReady, kDisposing, kDisposed };

  // Shared with the load thread, so a dispose during loading can cancel it and collect the result.
  struct LoadState {
    std::atomic<bool> cancel{false};
    std::mutex mu;
    std::shared_ptr<Engine> engine;
  };

  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Health(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Throws ENGINE_DISPOSED / ENGINE_NOT_LOADED unless the engine is ready.
  void CheckReady(Napi::Env env) const;
  void FinishLoad(Napi::Env env, Napi::Promise::Deferred deferred, std::shared_ptr<Engine> engine,
                  const Error* error);
  Napi::ThreadSafeFunction MakeTsfn(Napi::Env env, const char* name);

  State state_ = State::kEmpty;
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<LoadState> load_;
  std::thread load_thread_;
  std::thread dispose_thread_;
  std::vector<Napi::Promise::Deferred> dispose_waiters_;
  Napi::FunctionReference noop_;
};

}  // namespace qwen3::addon
