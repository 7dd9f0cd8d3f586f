export interface BatchingOptions {
  /** Token budget of one forward batch (a single longer sequence still runs, alone). */
  maxBatchTokens: number;
  /** Most sequences in one forward batch (BATCH_SIZE). */
  maxBatchSequences: number;
  /** Tokens allowed to wait for a batch; more gets 429. */
  maxQueueTokens: number;
  /** Requests allowed in the service at once (waiting or running); more gets 429. */
  maxQueuedRequests: number;
  /**
   * How fast waiting raises a sequence's priority, in tokens per second: a sequence that waited one
   * second competes as if it were this many tokens shorter. Bounds how long short-first can starve
   * a long input.
   */
  agingTokensPerSecond: number;
  /** At shutdown, how long admitted requests may take before they fail with 503. */
  drainTimeoutMs: number;
  /**
   * REQUEST_DEADLINE_MS: how long a request may take from arrival when it names no deadline. One
   * whose expected wait passes it is refused (429) at once; one still waiting when it passes is
   * dropped (429) rather than run late.
   */
  requestDeadlineMs: number;
}

export const DEFAULT_AGING_TOKENS_PER_SECOND = 4096;
