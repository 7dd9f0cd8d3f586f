export * from './batching-options.factory';
export * from './batching.options';
export * from './batching.service';
export * from './request-queue';
