import { Module } from '@nestjs/common';
import { EmbeddingsModule } from '@app/embeddings/embeddings.module';
import { RerankTemplate } from '@app/embeddings/rerank-template';
import { RerankController } from './rerank.controller';
import { RerankService } from './rerank.service';

/**
 * The reranker's endpoints, over the served model, tokenizer and batcher of EmbeddingsModule; its
 * template is POST /tokenize's too (RerankTemplate, looked up app-wide by libs/embeddings).
 */
@Module({
  imports: [EmbeddingsModule],
  controllers: [RerankController],
  providers: [RerankService, { provide: RerankTemplate, useExisting: RerankService }],
  exports: [RerankTemplate],
})
export class RerankModule {}
