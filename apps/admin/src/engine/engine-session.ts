import { Injectable } from '@nestjs/common';
import { AppConfig, loadToolConfig } from '@app/config';
import { ModelService } from '@app/embeddings/model.service';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import { NativeFloatArrayFormatter } from '@app/engine/float-array-formatter';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';
import { NativeEngine } from '@app/engine/native-engine';

/** Command-line overrides of the service's environment (MODEL_PATH, DEVICE, DTYPE, ...). */
export interface EngineOverrides {
  modelPath?: string;
  device?: 'cpu' | 'cuda';
  dtype?: 'float32' | 'bfloat16' | 'float16';
  tensorParallelSize?: number;
  addonPath?: string;
}

export interface OpenSession {
  config: AppConfig;
  engine: NativeEngine;
  model: ModelService;
  lifecycle: ModelLifecycle;
  tokenizer: TokenizerService;
}

/**
 * Builds the engine the way the API does (same config validation, same device layout and loading
 * code in ModelLifecycle), but only when a command asks: `checkpoint`, `model inspect`, `keys` and
 * `bench` never touch the addon or need an API key.
 */
@Injectable()
export class EngineSession {
  /**
   * The service configuration from the environment and `.env` plus overrides; API keys are not
   * required. With no MODEL_PATH / DEVICE anywhere, what `make serve` serves (loadToolConfig); the
   * defaults it picked go to stderr.
   */
  config(overrides: EngineOverrides = {}): AppConfig {
    const { config, notes } = loadToolConfig(
      {
        MODEL_PATH: overrides.modelPath,
        DEVICE: overrides.device,
        DTYPE: overrides.dtype,
        TENSOR_PARALLEL_SIZE: overrides.tensorParallelSize?.toString(),
        NATIVE_ADDON_PATH: overrides.addonPath,
      },
      (addonPath) => {
        try {
          return new NativeEngine(addonPath).cudaDevices().length > 0;
        } catch {
          return false; // an addon that cannot load fails again, with its message, when the engine is built
        }
      },
    );
    for (const note of notes) process.stderr.write(`note: ${note}\n`);
    return config;
  }

  /** An engine with no model, for build and device queries. */
  engine(config: AppConfig): NativeEngine {
    return new NativeEngine(config.model.nativeAddonPath);
  }

  /** Loads the model (no warm-up) exactly as the API would. Close it with `close()`. */
  async open(overrides: EngineOverrides = {}): Promise<OpenSession> {
    const config = this.config(overrides);
    const engine = this.engine(config);
    const tokenizer = new TokenizerService();
    const lifecycle = new ModelLifecycle(config, engine, () => engine.cudaDevices().length);
    const model = new ModelService(config, lifecycle, tokenizer, new NativeFloatArrayFormatter(engine));
    try {
      await model.load();
    } catch (error) {
      await lifecycle.teardown();
      throw error;
    }
    return { config, engine, model, lifecycle, tokenizer };
  }

  async close(session: OpenSession): Promise<void> {
    await session.lifecycle.teardown();
  }
}
