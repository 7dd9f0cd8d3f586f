export * from './engine.port';
export * from './packed-batch';
export * from './device-layout';
export * from './addon-types';
export * from './native-engine';
export * from './engine.module';
export * from './model-lifecycle.service';
export * from './float-array-formatter';
