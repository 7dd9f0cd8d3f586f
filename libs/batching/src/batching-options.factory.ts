import { AppConfig } from '@app/config';
import { BatchingOptions, DEFAULT_AGING_TOKENS_PER_SECOND } from './batching.options';

/**
 * One served model's batcher settings, from its limits (a MODELS entry's, or the top level's) and the
 * process's shutdown timeout. Each served model has its own BatchingService (libs/embeddings'
 * ModelRegistry builds them).
 */
export function batchingOptions({ limits, server }: AppConfig): BatchingOptions {
  return {
    maxBatchTokens: limits.maxBatchTokens,
    maxBatchSequences: limits.batchSize,
    maxQueueTokens: limits.maxQueueTokens,
    maxQueuedRequests: limits.maxQueuedRequests,
    agingTokensPerSecond: DEFAULT_AGING_TOKENS_PER_SECOND,
    drainTimeoutMs: server.shutdownTimeoutMs,
    requestDeadlineMs: limits.requestDeadlineMs,
  };
}
