import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BatchingModule } from '@app/batching/batching.module';
import { EngineHealthIndicator } from './engine.health';
import { HealthController } from './health.controller';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), BatchingModule],
  controllers: [HealthController],
  providers: [EngineHealthIndicator],
})
export class HealthModule {}
