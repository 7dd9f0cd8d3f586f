export * from './api-key.guard';
export * from './api-key.service';
export * from './auth.module';
export * from './public.decorator';
