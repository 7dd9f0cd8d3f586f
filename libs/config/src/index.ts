export * from './app-config';
export * from './config.module';
export * from './env.dto';
export * from './tool-config';
export * from './config-flags';
export * from './client-api-key';
export * from './prompt-aliases';
