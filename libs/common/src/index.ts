export * from './domain.error';
export * from './global-exception.filter';
export * from './logging.config';
export * from './openai-error';
export * from './openai-error.dto';
export * from './request-id';
export * from './validation.pipe';
export * from './seeded-random';
