export * from './engine.port';
export * from './addon-types';
export * from './native-engine';
export * from './engine.module';
