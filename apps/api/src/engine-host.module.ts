import { DynamicModule, Global, Module, Provider } from '@nestjs/common';
import { AppConfig } from '@app/config';
import {
  CUDA_DEVICE_COUNT,
  CudaDeviceCount,
  EngineFactory,
  EngineModule,
  EnginePort,
  FloatArrayFormatter,
  GivenEngines,
  NativeEngine,
  NativeFloatArrayFormatter,
} from '@app/engine';
import { HubModelDownloader } from '@app/hub/hub-model-downloader';

/** The Hub downloads of MODEL_ID checkpoints, whichever engines are bound. */
const DOWNLOADS: Provider[] = [HubModelDownloader];
const EXPORTED = [FloatArrayFormatter, EngineFactory, HubModelDownloader];

/**
 * Binds, for the whole app, the EngineFactory that makes each served model's engine and the row
 * formatter of the responses: the native addon (NATIVE_ADDON_PATH, else its default path) and its
 * formatter through EngineModule, or engines given by the caller, one per served model (unit tests of
 * the HTTP layer, the server-overhead bench), with JSON.stringify unless a formatter is given too.
 */
@Global()
@Module({})
export class EngineHostModule {
  static forRoot(engines?: EnginePort[], formatter?: FloatArrayFormatter): DynamicModule {
    if (engines) {
      return {
        module: EngineHostModule,
        providers: [
          { provide: EngineFactory, useValue: new GivenEngines(engines) },
          { provide: FloatArrayFormatter, useValue: formatter ?? new FloatArrayFormatter() },
          ...DOWNLOADS,
        ],
        exports: EXPORTED,
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
        ...DOWNLOADS,
      ],
      // EngineFactory comes from EngineModule, global.
      exports: [FloatArrayFormatter, HubModelDownloader, CUDA_DEVICE_COUNT],
    };
  }
}
