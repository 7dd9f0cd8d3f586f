import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { EmbeddingsModule } from '@app/embeddings/embeddings.module';
import { EngineHealthIndicator } from './engine.health';
import { HealthController } from './health.controller';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), EmbeddingsModule],
  controllers: [HealthController],
  providers: [EngineHealthIndicator],
})
export class HealthModule {}
