import { Module } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { BATCHING_OPTIONS, BatchingOptions, DEFAULT_AGING_TOKENS_PER_SECOND } from './batching.options';
import { BatchingService } from './batching.service';

@Module({
  providers: [
    BatchingService,
    {
      provide: BATCHING_OPTIONS,
      inject: [AppConfig],
      useFactory: ({ limits, server }: AppConfig): BatchingOptions => ({
        maxBatchTokens: limits.maxBatchTokens,
        maxBatchSequences: limits.batchSize,
        maxQueueTokens: limits.maxQueueTokens,
        maxQueuedRequests: limits.maxQueuedRequests,
        agingTokensPerSecond: DEFAULT_AGING_TOKENS_PER_SECOND,
        drainTimeoutMs: server.shutdownTimeoutMs,
        requestDeadlineMs: limits.requestDeadlineMs,
      }),
    },
  ],
  exports: [BatchingService],
})
export class BatchingModule {}
