import { Module } from '@nestjs/common';
import { EmbeddingsModule } from '@app/embeddings/embeddings.module';
import { RerankController } from './rerank.controller';
import { RerankService } from './rerank.service';

/** The reranker's endpoints, over the served model, tokenizer and batcher of EmbeddingsModule. */
@Module({
  imports: [EmbeddingsModule],
  controllers: [RerankController],
  providers: [RerankService],
})
export class RerankModule {}
