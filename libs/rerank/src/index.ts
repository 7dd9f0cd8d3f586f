export * from './rerank-prompt';
export * from './rerank.controller';
export * from './rerank.dto';
export * from './rerank.module';
export * from './rerank.service';
export * from './rerank-services';
