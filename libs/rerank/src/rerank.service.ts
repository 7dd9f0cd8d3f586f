import { performance } from 'node:perf_hooks';
import { InvalidRequestError, RequestTooLargeError } from '@app/common';
import { AppConfig } from '@app/config';
import { BatchingService } from '@app/batching/batching.service';
import type { EmbeddingTimings } from '@app/embeddings/embeddings.service';
import { ModelRequest, ModelRequestGate } from '@app/embeddings/model-request';
import { ModelService } from '@app/embeddings/model.service';
import { RerankTemplate, type RerankTemplateIds } from '@app/embeddings/rerank-template';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import type { ModelMetrics } from '@app/metrics/metrics.service';
import { RerankPromptBuilder } from './rerank-prompt';

/** One rerank request, whichever endpoint it came through. */
export interface RerankJob {
  model?: string | null;
  query: string;
  documents: string[];
  instruction?: string;
  /** Cut an over-long pair at its document's end (and mark it) instead of refusing the request. */
  truncate: boolean;
  /** The request's name for its documents, for errors: 'documents' (/v1/rerank) or 'texts' (/rerank). */
  field: 'documents' | 'texts';
}

export interface RerankScore {
  /** The document's position in the request. */
  index: number;
  /** The model's logit: logit("yes") - logit("no"), or the classifier's. */
  raw: number;
  /** sigmoid(raw), in 0..1: softmax over ["yes", "no"], taken at "yes". */
  relevance: number;
  truncated: boolean;
}

export interface RerankOutcome {
  /** The model the response names: the served id, or a prompt alias as the client sent it. */
  model: string;
  /** One per document, in request order. */
  scores: RerankScore[];
  /** Tokens of every templated pair. */
  promptTokens: number;
  timings: EmbeddingTimings;
}

/** softmax([yes, no])[0] from raw = yes - no, without overflow for large |raw|. */
export function sigmoid(raw: number): number {
  return raw >= 0 ? 1 / (1 + Math.exp(-raw)) : Math.exp(raw) / (1 + Math.exp(raw));
}

/**
 * Highest score first by the score the client sees (relevance, or the raw logit); equal scores keep
 * the request's order (lower index first).
 */
export function byScore(
  scores: readonly RerankScore[],
  key: 'relevance' | 'raw' = 'relevance',
): RerankScore[] {
  return [...scores].sort((a, b) => b[key] - a[key] || a.index - b.index);
}

/**
 * One rerank request: model, task and limit checks, the model card's template per pair (the prompt
 * builder, on the model's own tokenizer), the length policy, then the batching provider with one value
 * per pair (the engine's score head), and relevance = sigmoid(logit).
 */
export class RerankService implements RerankTemplate {
  private readonly gate: ModelRequestGate;
  private builder?: RerankPromptBuilder;

  constructor(
    private readonly config: AppConfig,
    private readonly model: ModelService,
    private readonly tokenizer: TokenizerService,
    private readonly batching: BatchingService,
    private readonly metrics: ModelMetrics,
  ) {
    this.gate = new ModelRequestGate(config, model, metrics);
  }

  /** AUTO_TRUNCATE: what text-embeddings-inference's `truncate` defaults to, as embeddings' does. */
  get autoTruncate(): boolean {
    return this.config.limits.autoTruncate;
  }

  /** `deadlineMs`: the client's X-Request-Deadline-Ms, else REQUEST_DEADLINE_MS; counted from now. */
  async rerank(job: RerankJob, signal?: AbortSignal, deadlineMs?: number): Promise<RerankOutcome> {
    return this.gate.run(job.model, 'rerank', deadlineMs, (admitted) =>
      this.rerankAdmitted(job, admitted, signal),
    );
  }

  private async rerankAdmitted(
    job: RerankJob,
    { binding, deadline }: ModelRequest,
    signal: AbortSignal | undefined,
  ): Promise<RerankOutcome> {
    // A prompt alias's instruction is the Instruct of a request that sends none.
    const instruction = job.instruction ?? binding.instruction;
    const { documents, field } = job;
    const maxDocuments = this.config.limits.maxRerankDocuments;
    if (documents.length > maxDocuments) {
      throw new InvalidRequestError(
        `${field} must have at most ${maxDocuments} items (MAX_RERANK_DOCUMENTS), got ${documents.length}; split the request`,
        field,
      );
    }

    // Under overload, refuse before tokenizing: a lower bound of the pairs' tokens (the template's
    // own ~40 per pair are left out of it).
    const queryTokens = 1 + (job.query.length >> 3);
    let minimum = 0;
    for (const document of documents) minimum += queryTokens + (document.length >> 3);
    this.batching.assertAdmissible(minimum, deadline);

    const tokenizeStarted = performance.now();
    const builder = this.promptBuilder();
    await builder.assertQueryFits(job.query, instruction);
    const pairs = await Promise.all(
      documents.map((document) => builder.build(job.query, document, instruction)),
    );
    const tokenizationMs = performance.now() - tokenizeStarted;
    this.metrics.tokenizationSeconds.observe(tokenizationMs / 1000);

    const vocabSize = this.model.info.vocabSize;
    let totalTokens = 0;
    pairs.forEach((pair, index) => {
      if (pair.truncated && !job.truncate) {
        throw new RequestTooLargeError(
          `${field}[${index}] makes a pair longer than this model's maximum of ${builder.maxLength} tokens with the query and template; shorten it or send truncate=true`,
          field,
          'context_length_exceeded',
        );
      }
      const outside = pair.tokenIds.find((id) => id >= vocabSize);
      if (outside !== undefined) {
        const token = this.tokenizer.tokenText(outside) ?? `token id ${outside}`;
        throw new InvalidRequestError(
          `${field}[${index}] with the query and template contains \`${token}\`, a token outside this model's vocabulary (0..${vocabSize - 1})`,
          field,
        );
      }
      totalTokens += pair.tokenIds.length;
    });
    if (totalTokens > this.config.limits.maxRequestTokens) {
      throw new RequestTooLargeError(
        `This request has ${totalTokens} tokens (${pairs.length} templated query-document pairs), more than the maximum of ${this.config.limits.maxRequestTokens} per request; split it.`,
      );
    }

    let result;
    try {
      result = await this.batching.submit({
        sequences: pairs.map((pair) => Int32Array.from(pair.tokenIds)),
        dimensions: 1,
        signal,
        deadline,
      });
    } catch (error) {
      throw renamedInputError(error, field);
    }
    const timings = this.gate.engineTimings(result, tokenizationMs, totalTokens);
    this.metrics.rerankDocuments.inc(pairs.length);
    const truncated = pairs.filter((pair) => pair.truncated).length;
    if (truncated > 0) this.metrics.rerankTruncatedDocuments.inc(truncated);

    const scores = result.embeddings.map((row, index): RerankScore => {
      const raw = row[0];
      return { index, raw, relevance: sigmoid(raw), truncated: pairs[index].truncated };
    });
    return { model: binding.responseModel, scores, promptTokens: totalTokens, timings };
  }

  /** One pair's ids exactly as a rerank request builds them (POST /tokenize's reranker template). */
  build(query: string, document: string, instruction?: string): Promise<RerankTemplateIds> {
    return this.promptBuilder().build(query, document, instruction);
  }

  /** The model's per-input limit: min(8192, MAX_INPUT_TOKENS, max_position_embeddings). */
  private promptBuilder(): RerankPromptBuilder {
    const maxLength = this.model.maxInputTokens;
    if (this.builder?.maxLength !== maxLength) {
      this.builder = new RerankPromptBuilder((text) => this.tokenizer.encodeText(text, false), maxLength);
    }
    return this.builder;
  }
}

/** The batcher names a sequence the model refused `input[i]`; here it is the request's document i. */
function renamedInputError(error: unknown, field: string): unknown {
  if (!(error instanceof InvalidRequestError) || error.param !== 'input') return error;
  const index = /^input\[(\d+)\]/.exec(error.message)?.[1];
  if (index === undefined) return error;
  return new InvalidRequestError(
    `${field}[${index}] could not be scored: the model rejected it; check its text`,
    field,
    error.code,
  );
}
