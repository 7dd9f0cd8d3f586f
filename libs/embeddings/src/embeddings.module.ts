import { Module } from '@nestjs/common';
import { BatchingModule } from '@app/batching/batching.module';
import { EmbeddingsController } from './embeddings.controller';
import { EmbeddingsService } from './embeddings.service';
import { ModelService } from './model.service';
import { ModelsController } from './models.controller';
import { TokenizerService } from './tokenizer.service';

@Module({
  imports: [BatchingModule],
  controllers: [EmbeddingsController, ModelsController],
  providers: [EmbeddingsService, ModelService, TokenizerService],
  exports: [ModelService, TokenizerService, BatchingModule],
})
export class EmbeddingsModule {}
