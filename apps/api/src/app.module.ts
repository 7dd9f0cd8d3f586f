import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import { AuthModule } from '@app/auth';
import { createLoggerParams, createValidationPipe, GlobalExceptionFilter } from '@app/common';
import { AppConfig, AppConfigModule, AppConfigModuleOptions } from '@app/config';
import { EmbeddingsModule } from '@app/embeddings';
import { EnginePort } from '@app/engine/engine.port';
import { FloatArrayFormatter } from '@app/engine/float-array-formatter';
import { HealthModule } from '@app/health';
import { MetricsModule } from '@app/metrics';
import { RerankModule } from '@app/rerank';
import { EngineHostModule } from './engine-host.module';

export interface AppModuleOptions extends AppConfigModuleOptions {
  /** Replaces the native engine of the (first) served model (HTTP-layer tests only; end-to-end tests use the real one). */
  engine?: EnginePort;
  /** Replaces the native engines, one per served model in MODELS order (as `engine`, for several models). */
  engines?: EnginePort[];
  /** With `engine`: how float rows are written (default JSON.stringify; the bench passes the addon's). */
  floatArrayFormatter?: FloatArrayFormatter;
}

/** The HTTP service: composes the libs; the behaviour lives in them. */
@Module({})
export class AppModule {
  static forRoot(options: AppModuleOptions = {}): DynamicModule {
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(options),
        LoggerModule.forRootAsync({
          inject: [AppConfig],
          useFactory: (config: AppConfig) => createLoggerParams(config.logLevel),
        }),
        EngineHostModule.forRoot(
          options.engines ?? (options.engine ? [options.engine] : undefined),
          options.floatArrayFormatter,
        ),
        MetricsModule,
        AuthModule,
        EmbeddingsModule,
        RerankModule,
        HealthModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: GlobalExceptionFilter },
        { provide: APP_PIPE, useFactory: () => createValidationPipe() },
      ],
    };
  }
}
