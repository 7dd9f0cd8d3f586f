export * from './engine.health';
export * from './health.controller';
export * from './health.module';
