import {
  type DynamicModule,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type OptionalFactoryDependency,
} from '@nestjs/common';

import { EnginePort } from './engine.port';
import { NativeEngine } from './native-engine';

export interface EngineModuleOptions {
  /** Path of qwen3_embed.node (config NATIVE_ADDON_PATH); defaults to <repo>/build/native/Release. */
  addonPath?: string;
}

export interface EngineModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  useFactory: (...args: any[]) => EngineModuleOptions | Promise<EngineModuleOptions>;
  /** Register the module globally. */
  isGlobal?: boolean;
}

export const ENGINE_MODULE_OPTIONS = Symbol('ENGINE_MODULE_OPTIONS');

/**
 * Provides `EnginePort` (and the concrete `NativeEngine`, for the admin commands' build and device
 * checks). The engine is created unloaded; ModelLifecycle loads it (setup) and disposes it
 * (teardown).
 */
@Module({})
export class EngineModule {
  static forRootAsync(options: EngineModuleAsyncOptions): DynamicModule {
    return {
      module: EngineModule,
      global: options.isGlobal ?? false,
      imports: options.imports ?? [],
      providers: [
        { provide: ENGINE_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
        {
          provide: NativeEngine,
          useFactory: (resolved: EngineModuleOptions) => new NativeEngine(resolved.addonPath),
          inject: [ENGINE_MODULE_OPTIONS],
        },
        { provide: EnginePort, useExisting: NativeEngine },
      ],
      exports: [EnginePort, NativeEngine],
    };
  }
}
