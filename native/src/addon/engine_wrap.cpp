#include "addon/engine_wrap.h"

#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "addon/convert.h"

namespace qwen3::addon {

namespace {

// What an engine thread hands back for one embed call.
struct EmbedOutcome {
  std::vector<float> rows;
  std::optional<Error> error;
};

}  // namespace

Napi::Function EngineWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<EngineWrap>::DefineClass(env, "Engine",
                                             {
                                                 InstanceMethod("load", &EngineWrap::Load),
                                                 InstanceMethod("embed", &EngineWrap::Embed),
                                                 InstanceMethod("info", &EngineWrap::Info),
                                                 InstanceMethod("health", &EngineWrap::Health),
                                                 InstanceMethod("dispose", &EngineWrap::Dispose),
                                             });
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : ObjectWrap<EngineWrap>(info) {
  noop_ = Napi::Persistent(Napi::Function::New(info.Env(), [](const Napi::CallbackInfo&) {}));
}

EngineWrap::~EngineWrap() {
  // Normally nothing is running here: load, embed and dispose hold a reference to this object
  // until they settle. At environment teardown they may not have, so stop everything first.
  if (load_) load_->cancel.store(true);
  if (load_thread_.joinable()) load_thread_.join();
  if (dispose_thread_.joinable()) dispose_thread_.join();
  if (engine_) engine_->Shutdown();
  if (load_) {
    std::lock_guard<std::mutex> lock(load_->mu);
    if (load_->engine) load_->engine->Shutdown();
  }
}

Napi::ThreadSafeFunction EngineWrap::MakeTsfn(Napi::Env env, const char* name) {
  return Napi::ThreadSafeFunction::New(env, noop_.Value(), name, /*maxQueueSize=*/0,
                                       /*initialThreadCount=*/1);
}

void EngineWrap::CheckReady(Napi::Env env) const {
  switch (state_) {
    case State::kReady:
      return;
    case State::kDisposing:
    case State::kDisposed:
      throw MakeError(env, ErrorCode::kEngineDisposed, "the engine has been disposed");
    case State::kEmpty:
    case State::kLoading:
      throw MakeError(env, ErrorCode::kEngineNotLoaded, "the engine has no model loaded");
  }
}

Napi::Value EngineWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    if (state_ == State::kDisposing || state_ == State::kDisposed) {
      throw MakeError(env, ErrorCode::kEngineDisposed, "the engine has been disposed");
    }
    if (state_ != State::kEmpty) {
      throw MakeError(env, ErrorCode::kInternal, "load() was already called on this engine");
    }
    EngineOptions options = ToEngineOptions(info[0]);
    Napi::Function on_progress = noop_.Value();
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsFunction()) throw MakeTypeError(env, "onProgress must be a function");
      on_progress = info[1].As<Napi::Function>();
    }
    if (load_thread_.joinable()) load_thread_.join();  // a previous, failed load

    Napi::ThreadSafeFunction tsfn =
        Napi::ThreadSafeFunction::New(env, on_progress, "qwen3.load", 0, 1);
    auto load = std::make_shared<LoadState>();
    load_ = load;
    state_ = State::kLoading;
    Ref();  // keep this object alive until the load settles
    load_thread_ = std::thread([this, tsfn, deferred, options, load]() mutable {
      std::shared_ptr<Engine> engine;
      std::optional<Error> error;
      try {
        ProgressCallback progress = [tsfn](const std::string& line) mutable {
          tsfn.NonBlockingCall([line](Napi::Env env, Napi::Function callback) {
            try {
              callback.Call({Napi::String::New(env, line)});
            } catch (const Napi::Error&) {
              // A throwing progress listener must not break loading.
            }
          });
        };
        engine = Engine::Load(options, progress, &load->cancel);
      } catch (const Error& e) {
        error = e;
      } catch (const std::exception& e) {
        error = Error(ErrorCode::kInternal, e.what());
      } catch (...) {
        error = Error(ErrorCode::kInternal, "unknown error while loading");
      }
      {
        std::lock_guard<std::mutex> lock(load->mu);
        load->engine = engine;
      }
      tsfn.NonBlockingCall([this, deferred, engine, error](Napi::Env env, Napi::Function) {
        FinishLoad(env, deferred, engine, error ? &*error : nullptr);
      });
      tsfn.Release();
    });
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  } catch (const std::exception& e) {
    deferred.Reject(MakeError(env, ErrorCode::kInternal, e.what()).Value());
  }
  return deferred.Promise();
}

void EngineWrap::FinishLoad(Napi::Env env, Napi::Promise::Deferred deferred,
                            std::shared_ptr<Engine> engine, const Error* error) {
  if (state_ != State::kLoading) {
    // Disposed while loading: the dispose thread shuts the engine down.
    deferred.Reject(
        MakeError(env, ErrorCode::kEngineDisposed, "the engine was disposed while loading")
            .Value());
  } else if (error != nullptr) {
    state_ = State::kEmpty;  // a later load() may try again
    load_.reset();
    deferred.Reject(MakeError(env, *error).Value());
  } else {
    engine_ = std::move(engine);
    state_ = State::kReady;
    load_.reset();
    try {
      deferred.Resolve(ToJs(env, engine_->Info()));
    } catch (const std::exception& e) {
      deferred.Reject(MakeError(env, ErrorCode::kInternal, e.what()).Value());
    }
  }
  Unref();
}

Napi::Value EngineWrap::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    CheckReady(env);
    PackedBatch batch;
    batch.token_ids = ToInt32Vector(info[0], "tokenIds");
    batch.cu_seqlens = ToInt32Vector(info[1], "cuSeqlens");
    batch.dimensions = ToInt32Vector(info[2], "dimensions");
    // Optional: tokens at the start of each sequence that mean pooling skips (omitted: none).
    if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
      batch.prompt_lengths = ToInt32Vector(info[3], "promptLengths");
    }
    try {
      engine_->Validate(batch);
    } catch (const Error& e) {
      throw MakeError(env, e);
    }

    Napi::ThreadSafeFunction tsfn = MakeTsfn(env, "qwen3.embed");
    Ref();  // released when the batch settles
    try {
      engine_->Submit(std::move(batch), [this, tsfn, deferred](std::vector<float> rows,
                                                               const Error* error) mutable {
        auto outcome = std::make_shared<EmbedOutcome>();
        outcome->rows = std::move(rows);
        if (error != nullptr) outcome->error = *error;
        tsfn.NonBlockingCall([this, deferred, outcome](Napi::Env env, Napi::Function) {
          if (outcome->error) {
            deferred.Reject(MakeError(env, *outcome->error).Value());
          } else {
            Napi::Float32Array array = Napi::Float32Array::New(env, outcome->rows.size());
            if (!outcome->rows.empty()) {
              std::memcpy(array.Data(), outcome->rows.data(), outcome->rows.size() * sizeof(float));
            }
            deferred.Resolve(array);
          }
          Unref();
        });
        tsfn.Release();
      });
    } catch (...) {
      tsfn.Release();
      Unref();
      throw;
    }
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  } catch (const Error& e) {
    deferred.Reject(MakeError(env, e).Value());
  } catch (const std::exception& e) {
    deferred.Reject(MakeError(env, ErrorCode::kInternal, e.what()).Value());
  }
  return deferred.Promise();
}

Napi::Value EngineWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckReady(env);
  try {
    return ToJs(env, engine_->Info());
  } catch (const Error& e) {
    throw MakeError(env, e);
  } catch (const std::exception& e) {
    throw MakeError(env, ErrorCode::kInternal, e.what());
  }
}

Napi::Value EngineWrap::Health(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HealthStatus status;
  switch (state_) {
    case State::kReady:
      try {
        status = engine_->Health();
      } catch (const std::exception& e) {
        status.ok = false;
        status.reason = e.what();
      }
      break;
    case State::kDisposing:
    case State::kDisposed:
      status.ok = false;
      status.reason = "the engine has been disposed";
      break;
    case State::kEmpty:
    case State::kLoading:
      status.ok = false;
      status.reason = "no model loaded";
      break;
  }
  return ToJs(env, status);
}

Napi::Value EngineWrap::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (state_ == State::kDisposed) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  dispose_waiters_.push_back(deferred);
  if (state_ == State::kDisposing) return deferred.Promise();

  state_ = State::kDisposing;
  std::shared_ptr<Engine> engine = std::move(engine_);
  std::shared_ptr<LoadState> load = std::move(load_);
  if (load) load->cancel.store(true);
  std::thread load_thread = std::move(load_thread_);
  Napi::ThreadSafeFunction tsfn = MakeTsfn(env, "qwen3.dispose");
  Ref();
  dispose_thread_ =
      std::thread([this, tsfn, engine, load, load_thread = std::move(load_thread)]() mutable {
        if (load_thread.joinable()) load_thread.join();
        if (!engine && load) {
          std::lock_guard<std::mutex> lock(load->mu);
          engine = load->engine;
        }
        if (engine) engine->Shutdown();  // waits for queued batches, joins threads, frees devices
        engine.reset();
        tsfn.NonBlockingCall([this](Napi::Env env, Napi::Function) {
          state_ = State::kDisposed;
          std::vector<Napi::Promise::Deferred> waiters;
          waiters.swap(dispose_waiters_);
          for (auto& waiter : waiters) waiter.Resolve(env.Undefined());
          Unref();
        });
        tsfn.Release();
      });
  return deferred.Promise();
}

}  // namespace qwen3::addon
