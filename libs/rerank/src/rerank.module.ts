import { Module } from '@nestjs/common';
import { EmbeddingsModule } from '@app/embeddings/embeddings.module';
import { RerankTemplates } from '@app/embeddings/rerank-template';
import { RerankController } from './rerank.controller';
import { RerankServices } from './rerank-services';

/**
 * The reranker's endpoints, over the served models of EmbeddingsModule (each reranker's own
 * tokenizer and batcher); its template is POST /tokenize's too (RerankTemplates, looked up app-wide by
 * libs/embeddings).
 */
@Module({
  imports: [EmbeddingsModule],
  controllers: [RerankController],
  providers: [RerankServices, { provide: RerankTemplates, useExisting: RerankServices }],
  exports: [RerankTemplates],
})
export class RerankModule {}
