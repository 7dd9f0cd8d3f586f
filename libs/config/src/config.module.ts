import { DynamicModule, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { AppConfig, loadAppConfig } from './app-config';

const APP_CONFIG_KEY = 'app';

export interface AppConfigModuleOptions {
  /** Variables laid over the process environment (or used alone, see `inheritProcessEnv`). */
  env?: Record<string, string | undefined>;
  /** Read process.env and `.env` (default true). Tests pass false to be independent of the shell. */
  inheritProcessEnv?: boolean;
  /** Started with --demo (see docs/operations.md, "Keys and authentication"). */
  demo?: boolean;
}

/** Validates the environment once, at boot, and provides the typed `AppConfig` everywhere. */
@Module({})
export class AppConfigModule {
  static forRoot(options: AppConfigModuleOptions = {}): DynamicModule {
    const inherit = options.inheritProcessEnv ?? true;
    return {
      module: AppConfigModule,
      global: true,
      imports: [
        ConfigModule.forRoot({
          ignoreEnvFile: !inherit,
          validatePredefined: inherit,
          skipProcessEnv: !inherit,
          validate: (raw) => ({
            [APP_CONFIG_KEY]: loadAppConfig(
              { ...(inherit ? (raw as Record<string, string | undefined>) : {}), ...options.env },
              { demo: options.demo },
            ),
          }),
        }),
      ],
      providers: [
        {
          provide: AppConfig,
          inject: [ConfigService],
          useFactory: (config: ConfigService) => config.getOrThrow<AppConfig>(APP_CONFIG_KEY),
        },
      ],
      exports: [AppConfig],
    };
  }
}
