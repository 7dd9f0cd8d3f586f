import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import { AuthModule, passportAuthModule } from '@app/auth';
import { createLoggerParams, createValidationPipe, GlobalExceptionFilter } from '@app/common';
import { AppConfig, AppConfigModule, AppConfigModuleOptions } from '@app/config';
import { EmbeddingsModule } from '@app/embeddings';
import { EnginePort } from '@app/engine/engine.port';
import { FloatArrayFormatter } from '@app/engine/float-array-formatter';
import { HealthModule } from '@app/health';
import { MetricsModule } from '@app/metrics';
import { EngineHostModule } from './engine-host.module';

/**
 * The hot path's shortcuts past the framework, each beside the framework's own way of doing the same:
 * - auth: ApiKeyGuard runs passport-http-bearer's strategy itself, not @nestjs/passport's AuthGuard
 *   (that path needs @nestjs/passport and passport installed);
 */
export const HOT_PATH_BYPASSES = ['auth'] as const;
export type HotPathBypass = (typeof HOT_PATH_BYPASSES)[number];

export interface AppModuleOptions extends AppConfigModuleOptions {
  /** Replaces the native engine (HTTP-layer tests only; end-to-end tests use the real one). */
  engine?: EnginePort;
  /** With `engine`: how float rows are written (default JSON.stringify; the bench passes the addon's). */
  floatArrayFormatter?: FloatArrayFormatter;
  /**
   * Bypasses that take the framework's path instead (bench/bypass-overhead.ts measures each against
   * its shortcut). Code only: no variable or flag reaches it; main.ts never sets it.
   */
  frameworkPaths?: readonly HotPathBypass[];
}

/** AuthModule, or with `framework` its @nestjs/passport form (refused when that is not installed). */
function authModule(framework: boolean): DynamicModule | typeof AuthModule {
  if (!framework) return AuthModule;
  const passport = passportAuthModule();
  if (!passport) {
    throw new Error("the framework path of 'auth' needs @nestjs/passport and passport installed");
  }
  return passport;
}

/** The HTTP service: composes the libs; the behaviour lives in them. */
@Module({})
export class AppModule {
  static forRoot(options: AppModuleOptions = {}): DynamicModule {
    const framework = new Set(options.frameworkPaths ?? []);
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(options),
        LoggerModule.forRootAsync({
          inject: [AppConfig],
          useFactory: (config: AppConfig) => createLoggerParams(config.logLevel),
        }),
        EngineHostModule.forRoot(options.engine, options.floatArrayFormatter),
        MetricsModule,
        authModule(framework.has('auth')),
        EmbeddingsModule,
        HealthModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: GlobalExceptionFilter },
        { provide: APP_PIPE, useFactory: () => createValidationPipe() },
      ],
    };
  }
}
