import { Module } from '@nestjs/common';
import { BatchingModule } from '@app/batching/batching.module';
import { EmbeddingsController } from './embeddings.controller';
import { EmbeddingsService } from './embeddings.service';
import { ModelService } from './model.service';
import { ModelsController } from './models.controller';
import { InfoController } from './info.controller';
import { TokenizeController } from './tokenize.controller';
import { TokenizeService } from './tokenize.service';
import { TokenizerService } from './tokenizer.service';

@Module({
  imports: [BatchingModule],
  controllers: [EmbeddingsController, ModelsController, TokenizeController, InfoController],
  providers: [EmbeddingsService, ModelService, TokenizerService, TokenizeService],
  exports: [ModelService, TokenizerService, BatchingModule],
})
export class EmbeddingsModule {}
