import { DynamicModule, Global, Module, Provider } from '@nestjs/common';
import { AppConfig } from '@app/config';
import {
  CUDA_DEVICE_COUNT,
  CudaDeviceCount,
  EngineModule,
  EnginePort,
  FloatArrayFormatter,
  ModelLifecycle,
  NativeEngine,
  NativeFloatArrayFormatter,
} from '@app/engine';
import { HubModelDownloader } from '@app/hub/hub-model-downloader';

/** The engine's owners, whichever engine is bound: the model's lifecycle and its Hub downloads. */
const LIFECYCLE: Provider[] = [ModelLifecycle, HubModelDownloader];
const EXPORTED = [FloatArrayFormatter, ModelLifecycle];

/**
 * Binds the EnginePort for the whole app, with the model lifecycle that loads and disposes it and
 * the row formatter of the responses: the native addon (NATIVE_ADDON_PATH, else its default path)
 * and its formatter through EngineModule, or an engine given by the caller (unit tests of the HTTP
 * layer, the server-overhead bench), with JSON.stringify unless a formatter is given too.
 */
@Global()
@Module({})
export class EngineHostModule {
  static forRoot(engine?: EnginePort, formatter?: FloatArrayFormatter): DynamicModule {
    if (engine) {
      return {
        module: EngineHostModule,
        providers: [
          { provide: EnginePort, useValue: engine },
          { provide: FloatArrayFormatter, useValue: formatter ?? new FloatArrayFormatter() },
          ...LIFECYCLE,
        ],
        exports: [EnginePort, ...EXPORTED],
      };
    }
    return {
      module: EngineHostModule,
      imports: [
        EngineModule.forRootAsync({
          isGlobal: true,
          inject: [AppConfig],
          useFactory: (config: AppConfig) => ({ addonPath: config.model.nativeAddonPath }),
        }),
      ],
      providers: [
        {
          provide: CUDA_DEVICE_COUNT,
          inject: [NativeEngine],
          useFactory:
            (native: NativeEngine): CudaDeviceCount =>
            () =>
              native.cudaDevices().length,
        },
        {
          provide: FloatArrayFormatter,
          inject: [NativeEngine],
          useFactory: (native: NativeEngine) => new NativeFloatArrayFormatter(native),
        },
        ...LIFECYCLE,
      ],
      exports: [...EXPORTED, CUDA_DEVICE_COUNT],
    };
  }
}
