export * from './batching.module';
export * from './batching.options';
export * from './batching.service';
export * from './request-queue';
