/**
 * What a forward batch costs, learnt from the batches that ran: `seconds = overhead + perToken ×
 * tokens`, fitted by least squares with exponential forgetting. A plain tokens/seconds ratio would
 * take the fixed cost of the small batches of low load (kernel launches, thread hand-offs) for a slow
 * engine, and the first burst would be refused for a wait it does not have.
 *
 * Before any batch is measured it answers from a prior, held as two light pseudo-batches (a small one
 * and a full one), which also keeps the fit well-posed while every measured batch has the same size.
 */
export class BatchCostModel {
  private weight = 0;
  private sumX = 0;
  private sumY = 0;
  private sumXX = 0;
  private sumXY = 0;
  private overhead = 0;
  private perToken = 0;

  constructor(
    priorOverheadSeconds: number,
    priorTokensPerSecond: number,
    private readonly maxBatchTokens: number,
    /**
     * Weight kept by what was learnt at each new batch (0.7: about the last 3 batches, so that it
     * follows a machine whose speed changes within seconds, e.g. when HTTP work or other processes
     * take the engine's cores; deadline checks add their own margin for the noise).
     */
    private readonly decay = 0.7,
  ) {
    const priorWeight = 0.5;
    for (const tokens of [1, maxBatchTokens]) {
      this.add(tokens, priorOverheadSeconds + tokens / priorTokensPerSecond, priorWeight);
    }
    this.fit();
  }

  /** Records a batch that ran: its tokens and wall time. */
  observe(tokens: number, seconds: number): void {
    this.weight *= this.decay;
    this.sumX *= this.decay;
    this.sumY *= this.decay;
    this.sumXX *= this.decay;
    this.sumXY *= this.decay;
    this.add(tokens, seconds, 1);
    this.fit();
  }

  /** Expected seconds of one batch of `tokens`. */
  batchSeconds(tokens: number): number {
    return this.overhead + this.perToken * tokens;
  }

  /** Expected seconds to run `tokens` queued tokens in full batches on one replica. */
  workSeconds(tokens: number): number {
    return tokens <= 0 ? 0 : this.overhead * Math.ceil(tokens / this.maxBatchTokens) + this.perToken * tokens;
  }

  /** Tokens per second of one replica in full batches. */
  tokensPerSecond(): number {
    return this.maxBatchTokens / this.batchSeconds(this.maxBatchTokens);
  }

  private add(tokens: number, seconds: number, weight: number): void {
    this.weight += weight;
    this.sumX += weight * tokens;
    this.sumY += weight * seconds;
    this.sumXX += weight * tokens * tokens;
    this.sumXY += weight * tokens * seconds;
  }

  private fit(): void {
    const spread = this.weight * this.sumXX - this.sumX * this.sumX;
    let perToken =
      spread > 1e-9 * this.weight * this.sumXX
        ? (this.weight * this.sumXY - this.sumX * this.sumY) / spread
        : 0;
    let overhead = (this.sumY - perToken * this.sumX) / this.weight;
    // Noise on a busy machine can tilt the line: fall back to a plain ratio rather than a negative cost.
    if (!(perToken > 0) || !(overhead >= 0)) {
      perToken = this.sumY / this.sumX;
      overhead = 0;
    }
    this.perToken = perToken;
    this.overhead = overhead;
  }
}
