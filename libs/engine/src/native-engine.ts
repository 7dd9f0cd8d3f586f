import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import type {
  AddonAllReduceCheck,
  AddonBinding,
  AddonBuildInfo,
  AddonCudaDevice,
  AddonEngine,
  AddonInfo,
  AddonLoadOptions,
} from './addon-types';
import {
  EngineError,
  type EngineErrorCode,
  type EngineInfo,
  type EngineLoadOptions,
  EnginePort,
  type PackedBatch,
} from './engine.port';

/** Where `npx cmake-js compile --out build/native` puts the addon, relative to the repository root. */
export const ADDON_RELATIVE_PATH = path.join('build', 'native', 'Release', 'qwen3_embed.node');

const ENGINE_ERROR_CODES: ReadonlySet<string> = new Set<EngineErrorCode>([
  'ENGINE_DISPOSED',
  'ENGINE_NOT_LOADED',
  'INVALID_ARGUMENT',
  'MODEL_LOAD_FAILED',
  'OUT_OF_MEMORY',
  'DEVICE_FAILED',
  'INTERNAL',
]);

/**
 * The repository root: the nearest directory above `start` holding a package.json. Works from the
 * sources (libs/engine/src, under ts-jest) and from the compiled output (dist/libs/engine/src).
 */
export function findRepoRoot(start: string = __dirname): string {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(start, '..', '..', '..');
    dir = parent;
  }
}

export function defaultAddonPath(): string {
  return path.join(findRepoRoot(), ADDON_RELATIVE_PATH);
}

/**
 * Maps whatever the addon threw to an EngineError. Argument errors (TypeError / RangeError) become
 * INVALID_ARGUMENT so the HTTP layer can answer 400 without knowing about the addon. Errors are
 * recognised by `code` and `name`, never `instanceof`: they come from the addon's realm, which is not
 * the caller's under jest.
 */
export function toEngineError(error: unknown): EngineError {
  if (error instanceof EngineError) return error;
  if (typeof error === 'object' && error !== null) {
    const { code, name, message } = error as { code?: unknown; name?: unknown; message?: unknown };
    const text = typeof message === 'string' ? message : String(error);
    if (typeof code === 'string' && ENGINE_ERROR_CODES.has(code)) {
      return new EngineError(code as EngineErrorCode, text);
    }
    if (name === 'TypeError' || name === 'RangeError') return new EngineError('INVALID_ARGUMENT', text);
    return new EngineError('INTERNAL', text);
  }
  return new EngineError('INTERNAL', String(error));
}

/**
 * An addon built before Dense layers existed reports no outputDimension: its rows are hiddenSize long;
 * one built before score heads reports no head: it embeds.
 */
function withOutputDimension(info: AddonInfo): EngineInfo {
  const outputDimension = typeof info.outputDimension === 'number' ? info.outputDimension : info.hiddenSize;
  return { ...info, outputDimension, head: info.head ?? 'embedding' };
}

/**
 * EnginePort over the C++ addon. The addon is loaded on first use (so a missing build fails `load()`
 * with an actionable message rather than the process at import time). Every native error is
 * converted to an EngineError; once disposed, every call fails with ENGINE_DISPOSED.
 */
export class NativeEngine extends EnginePort {
  private binding?: AddonBinding;
  private engine?: AddonEngine;
  private disposed = false;
  private disposal?: Promise<void>;

  constructor(readonly addonPath: string = defaultAddonPath()) {
    super();
  }

  async load(options: EngineLoadOptions): Promise<EngineInfo> {
    this.assertNotDisposed();
    const binding = this.loadBinding();
    const addonOptions: AddonLoadOptions = {
      modelPath: options.modelPath,
      device: options.device,
      dtype: options.dtype,
      deviceIds: options.deviceIds,
      tensorParallelSize: options.tensorParallelSize,
      cpuThreads: options.cpuThreads ?? 0,
      cudaGraphMaxTokens: options.cudaGraphMaxTokens ?? 512,
      peerAllReduce: options.peerAllReduce ?? true,
      idleSpinUs: options.idleSpinUs ?? 0,
      pooling: options.pooling ?? 'lasttoken',
      denseLayers: options.denseLayers ?? [],
      head: options.head ?? 'embedding',
    };
    // A score head reads the raw row: the addon defaults normalize to false for it.
    if (options.normalize !== undefined) addonOptions.normalize = options.normalize;
    else if (addonOptions.head === 'embedding') addonOptions.normalize = true;
    if (options.yesNoTokenIds) addonOptions.yesNoTokenIds = options.yesNoTokenIds;
    try {
      // After a failed load the same native engine may try again.
      this.engine ??= new binding.Engine();
      return withOutputDimension(await this.engine.load(addonOptions, options.onProgress));
    } catch (error) {
      throw toEngineError(error);
    }
  }

  async embed(batch: PackedBatch): Promise<Float32Array> {
    const engine = this.loadedEngine();
    try {
      return await engine.embed(batch.tokenIds, batch.cuSeqlens, batch.dimensions, batch.promptLengths);
    } catch (error) {
      throw toEngineError(error);
    }
  }

  info(): EngineInfo {
    const engine = this.loadedEngine();
    try {
      return withOutputDimension(engine.info());
    } catch (error) {
      throw toEngineError(error);
    }
  }

  health(): { ok: boolean; reason?: string } {
    if (this.disposed) return { ok: false, reason: 'the engine has been disposed' };
    if (!this.engine) return { ok: false, reason: 'no model loaded' };
    try {
      return this.engine.health();
    } catch (error) {
      return { ok: false, reason: toEngineError(error).message };
    }
  }

  /** Waits for in-flight batches, then frees the devices. Idempotent. */
  dispose(): Promise<void> {
    if (!this.disposal) {
      this.disposed = true;
      const engine = this.engine;
      this.disposal = engine
        ? engine.dispose().catch((error: unknown) => {
            throw toEngineError(error);
          })
        : Promise.resolve();
    }
    return this.disposal;
  }

  /** Versions and features compiled into the addon. */
  buildInfo(): AddonBuildInfo {
    return this.loadBinding().buildInfo();
  }

  /** The visible CUDA devices ([] without CUDA). */
  cudaDevices(): AddonCudaDevice[] {
    try {
      return this.loadBinding().cudaDevices();
    } catch (error) {
      throw toEngineError(error);
    }
  }

  /** Runs checked all-reduces over the GPUs, large and short-query sized (DEVICE_FAILED without NCCL). */
  async allReduceCheck(deviceIds: number[], peerAllReduce = true): Promise<AddonAllReduceCheck> {
    try {
      return await this.loadBinding().allReduceCheck(deviceIds, { peerAllReduce });
    } catch (error) {
      throw toEngineError(error);
    }
  }

  /** The row as JSON text, formatted natively (see NativeFloatArrayFormatter). */
  floatArrayJson(values: Float32Array): string {
    try {
      return this.loadBinding().floatArrayJson(values);
    } catch (error) {
      throw toEngineError(error);
    }
  }

  private loadBinding(): AddonBinding {
    if (!this.binding) {
      try {
        this.binding = createRequire(__filename)(this.addonPath) as AddonBinding;
      } catch (error) {
        const message = (error as { message?: unknown } | null)?.message;
        const reason = typeof message === 'string' ? message : String(error);
        throw new EngineError(
          'MODEL_LOAD_FAILED',
          `cannot load the native addon ${this.addonPath}: ${reason}. ` +
            `Build it with 'make native' (npx cmake-js compile --out build/native).`,
        );
      }
    }
    return this.binding;
  }

  private assertNotDisposed(): void {
    if (this.disposed) throw new EngineError('ENGINE_DISPOSED', 'the engine has been disposed');
  }

  private loadedEngine(): AddonEngine {
    this.assertNotDisposed();
    if (!this.engine) throw new EngineError('ENGINE_NOT_LOADED', 'the engine has no model loaded');
    return this.engine;
  }
}
