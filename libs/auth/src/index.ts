export * from './api-key.guard';
export * from './api-key.service';
export * from './auth.module';
export * from './bearer.strategy';
export * from './public.decorator';
export * from './passport-auth.module';
