import { Module } from '@nestjs/common';
import { EmbeddingsController } from './embeddings.controller';
import { InfoController } from './info.controller';
import { ModelRegistry } from './model-registry';
import { ModelsController } from './models.controller';
import { TokenizeController } from './tokenize.controller';

/**
 * The served models (ModelRegistry: one engine, lifecycle, tokenizer and batcher each) and the
 * endpoints of embedding models, model listing, /info and tokenization.
 */
@Module({
  controllers: [EmbeddingsController, ModelsController, TokenizeController, InfoController],
  providers: [ModelRegistry],
  exports: [ModelRegistry],
})
export class EmbeddingsModule {}
