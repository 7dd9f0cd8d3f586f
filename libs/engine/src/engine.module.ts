import {
  type DynamicModule,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type OptionalFactoryDependency,
} from '@nestjs/common';

import { EngineFactory } from './engine-factory';
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
 * Provides the `EngineFactory` that makes one native engine per served model, and a `NativeEngine`
 * of the process's own for the addon's build, device and formatting calls (never loaded). Engines are
 * created unloaded; each model's ModelLifecycle loads its own (setup) and disposes it (teardown).
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
        {
          provide: EngineFactory,
          useFactory: (resolved: EngineModuleOptions): EngineFactory => ({
            create: () => new NativeEngine(resolved.addonPath),
          }),
          inject: [ENGINE_MODULE_OPTIONS],
        },
      ],
      exports: [EngineFactory, NativeEngine],
    };
  }
}
