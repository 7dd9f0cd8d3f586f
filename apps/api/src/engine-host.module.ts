import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { CUDA_DEVICE_COUNT, CudaDeviceCount } from '@app/embeddings/model.service';
import { EngineModule, EnginePort, NativeEngine } from '@app/engine';

/**
 * Binds the EnginePort for the whole app: the native addon (NATIVE_ADDON_PATH, else its default
 * path) through EngineModule, or an engine given by the caller (unit tests of the HTTP layer).
 */
@Global()
@Module({})
export class EngineHostModule {
  static forRoot(engine?: EnginePort): DynamicModule {
    if (engine) {
      return {
        module: EngineHostModule,
        providers: [{ provide: EnginePort, useValue: engine }],
        exports: [EnginePort],
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
      ],
      exports: [CUDA_DEVICE_COUNT],
    };
  }
}
