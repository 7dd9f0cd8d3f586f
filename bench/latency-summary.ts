/** Latency percentiles and throughput of a load run. */

export interface LatencySummary {
  count: number;
  mean: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p99: number;
}

/**
 * The q-quantile (0..1) by linear interpolation between the closest ranks (numpy's default), so the
 * Python baseline's numbers compare like for like.
 */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  if (q <= 0) return sorted[0];
  if (q >= 1) return sorted[sorted.length - 1];
  const rank = q * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

export function summariseLatencies(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const count = sorted.length;
  const mean = count === 0 ? NaN : sorted.reduce((sum, value) => sum + value, 0) / count;
  return {
    count,
    mean,
    min: count === 0 ? NaN : sorted[0],
    max: count === 0 ? NaN : sorted[count - 1],
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
  };
}

export interface Throughput {
  requestsPerSecond: number;
  embeddingsPerSecond: number;
  tokensPerSecond: number;
}

export function throughput(
  seconds: number,
  totals: { requests: number; embeddings: number; tokens: number },
): Throughput {
  const per = (value: number): number => (seconds > 0 ? value / seconds : 0);
  return {
    requestsPerSecond: per(totals.requests),
    embeddingsPerSecond: per(totals.embeddings),
    tokensPerSecond: per(totals.tokens),
  };
}
