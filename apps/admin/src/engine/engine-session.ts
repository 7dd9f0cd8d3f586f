import { Injectable } from '@nestjs/common';
import { AppConfig, loadProcessConfig } from '@app/config';
import { ModelService } from '@app/embeddings/model.service';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
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
  tokenizer: TokenizerService;
}

/**
 * Builds the engine the way the API does (same config validation, same device layout and loading
 * code in ModelService), but only when a command asks: `checkpoint`, `model inspect`, `keys` and
 * `bench` never touch the addon or need an API key.
 */
@Injectable()
export class EngineSession {
  /** The service configuration from the environment plus overrides; API keys are not required. */
  config(overrides: EngineOverrides = {}): AppConfig {
    const env: Record<string, string | undefined> = { AUTH_DISABLED: 'true', WARMUP: 'false' };
    if (overrides.modelPath) env.MODEL_PATH = overrides.modelPath;
    if (overrides.device) env.DEVICE = overrides.device;
    if (overrides.dtype) env.DTYPE = overrides.dtype;
    if (overrides.tensorParallelSize) env.TENSOR_PARALLEL_SIZE = String(overrides.tensorParallelSize);
    if (overrides.addonPath) env.NATIVE_ADDON_PATH = overrides.addonPath;
    return loadProcessConfig(env);
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
    const model = new ModelService(config, engine, tokenizer, () => engine.cudaDevices().length);
    try {
      await model.load();
    } catch (error) {
      await engine.dispose().catch(() => undefined);
      throw error;
    }
    return { config, engine, model, tokenizer };
  }

  async close(session: OpenSession): Promise<void> {
    await session.engine.dispose();
  }
}
