import { Module, ModuleMetadata } from '@nestjs/common';
import { BatchingModule } from '@app/batching/batching.module';
import { EmbeddingsController } from './embeddings.controller';
import { EmbeddingsService } from './embeddings.service';
import { FrameworkResponseEmbeddingsController } from './framework-response.controller';
import { ModelService } from './model.service';
import { ModelsController } from './models.controller';
import { TokenizerService } from './tokenizer.service';

const EMBEDDINGS: ModuleMetadata = {
  imports: [BatchingModule],
  providers: [EmbeddingsService, ModelService, TokenizerService],
  exports: [ModelService, TokenizerService, BatchingModule],
};

@Module({ ...EMBEDDINGS, controllers: [EmbeddingsController, ModelsController] })
export class EmbeddingsModule {}

/** EmbeddingsModule with the embeddings route answered through res.send (bench/bypass-overhead.ts). */
@Module({ ...EMBEDDINGS, controllers: [FrameworkResponseEmbeddingsController, ModelsController] })
export class FrameworkResponseEmbeddingsModule {}
