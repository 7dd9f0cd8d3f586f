import { performance } from 'node:perf_hooks';
import { InvalidRequestError, RequestTooLargeError } from '@app/common';
import { AppConfig } from '@app/config';
import { BatchingService } from '@app/batching/batching.service';
import type { ModelMetrics } from '@app/metrics/metrics.service';
import { embeddingsResponseJson } from './embedding-encoding';
import { EmbeddingsRequestDto } from './embeddings.dto';
import { ModelRequest, ModelRequestGate } from './model-request';
import { ModelBinding, ModelService } from './model.service';
import { requestedPrompt } from './prompt-template';
import { TokenizerService } from './tokenizer.service';

export interface EmbeddingTimings {
  tokenizationMs: number;
  queueMs: number;
  inferenceMs: number;
  totalTokens: number;
  batches: number;
}

export interface EmbeddingsResult {
  /** The response body: the JSON text of an EmbeddingsResponseDto. */
  body: string;
  timings: EmbeddingTimings;
}

/**
 * One embeddings request: model and option checks, prompts, tokenization (the family's special tokens),
 * the length policy (reject or truncate), then the batching provider, then float or base64 rows.
 */
export class EmbeddingsService {
  private readonly gate: ModelRequestGate;

  constructor(
    private readonly config: AppConfig,
    private readonly model: ModelService,
    private readonly tokenizer: TokenizerService,
    private readonly batching: BatchingService,
    private readonly metrics: ModelMetrics,
  ) {
    this.gate = new ModelRequestGate(config, model, metrics);
  }

  /**
   * `deadlineMs`: the client's X-Request-Deadline-Ms (validated by `parseDeadlineHeader`), else
   * REQUEST_DEADLINE_MS; counted from now.
   */
  async embed(
    sent: EmbeddingsRequestDto,
    signal?: AbortSignal,
    deadlineMs?: number,
  ): Promise<EmbeddingsResult> {
    const request = withoutNulls(sent);
    return this.gate.run(request.model, 'embed', deadlineMs, (admitted) =>
      this.embedAdmitted(request, admitted, signal),
    );
  }

  private async embedAdmitted(
    request: EmbeddingsRequestDto,
    { binding, deadline }: ModelRequest,
    signal: AbortSignal | undefined,
  ): Promise<EmbeddingsResult> {
    const dimensions = this.dimensions(request.dimensions);

    // Under overload, refuse before tokenizing: a text has at least one token per 8 characters or so
    // (a lower bound keeps this from refusing what the exact check after tokenization would admit).
    this.batching.assertAdmissible(minimumTokens(request.input), deadline);

    const tokenizeStarted = performance.now();
    const tokenized = await this.tokenize(request, binding);
    let sequences = tokenized.sequences;
    this.assertEmbeddable(sequences, request, tokenized.instruction);
    const tokenizationMs = performance.now() - tokenizeStarted;
    this.metrics.tokenizationSeconds.observe(tokenizationMs / 1000);
    sequences = this.applyLengthPolicy(sequences, request.truncate ?? this.config.limits.autoTruncate);
    // A prompt cut by truncation still leaves the sequence's last token to pool.
    const promptLengths =
      tokenized.promptLength > 0
        ? sequences.map((sequence) => Math.min(tokenized.promptLength, sequence.length - 1))
        : undefined;

    const totalTokens = sequences.reduce((sum, sequence) => sum + sequence.length, 0);
    if (totalTokens > this.config.limits.maxRequestTokens) {
      throw new RequestTooLargeError(
        `This request has ${totalTokens} tokens, more than the maximum of ${this.config.limits.maxRequestTokens} per request; split it.`,
      );
    }

    const result = await this.batching.submit({ sequences, dimensions, promptLengths, signal, deadline });
    const timings = this.gate.engineTimings(result, tokenizationMs, totalTokens);
    this.metrics.inputs.inc(sequences.length);

    const body = embeddingsResponseJson(
      {
        rows: result.embeddings,
        encoding: request.encoding_format === 'base64' ? 'base64' : 'float',
        model: binding.responseModel,
        promptTokens: totalTokens,
      },
      (row) => this.model.floatArrayJson(row),
    );
    return { body, timings };
  }

  private dimensions(requested: number | undefined): number {
    const full = this.model.info.outputDimension;
    if (requested === undefined) {
      return this.model.defaultDimensions;
    }
    if (requested > full) {
      throw new InvalidRequestError(
        `dimensions must be between 32 and ${full} for this model, got ${requested}`,
        'dimensions',
      );
    }
    return requested;
  }

  /**
   * The inputs' token ids, and the tokens of their prompt that pooling leaves out (0 unless the
   * checkpoint pools with include_prompt=false and a prompt was applied).
   */
  private async tokenize(
    request: EmbeddingsRequestDto,
    binding: ModelBinding,
  ): Promise<{ sequences: Int32Array[]; promptLength: number; instruction?: InstructionSource }> {
    const { input } = request;
    const prompt = requestedPrompt(request, binding);
    if (typeof input === 'string' || typeof input[0] === 'string') {
      const texts = typeof input === 'string' ? [input] : (input as string[]);
      const prefix = this.model.prompts.prefix(prompt);
      const [sequences, promptLength] = await Promise.all([
        this.tokenizer.encode(prefix ? texts.map((text) => prefix + text) : texts),
        this.model.excludesPrompt ? this.tokenizer.promptLength(prefix) : 0,
      ]);
      const instruction: InstructionSource | undefined =
        prompt.instruction === undefined
          ? undefined
          : { text: prompt.instruction, param: prompt.explicit ? 'instruction' : 'model' };
      return { sequences, promptLength, instruction };
    }
    if (prompt.explicit) {
      throw new InvalidRequestError(
        'input_type, prompt_name and instruction apply to text input only; token-id input is embedded as given',
        request.instruction !== undefined ? 'instruction' : 'input_type',
      );
    }
    if (prompt.inputType !== undefined) {
      throw new InvalidRequestError(
        `the model name '${binding.responseModel}' binds a prompt, which applies to text input only; send token ids with the model id '${binding.modelId}'`,
        'model',
      );
    }
    const lists = typeof input[0] === 'number' ? [input as number[]] : (input as number[][]);
    return { sequences: lists.map((ids) => this.tokenizer.fromIds(ids)), promptLength: 0 };
  }

  /**
   * Every input on its own, before it can join a batch: each id needs a row in the model's embedding
   * table (the engine's vocabSize, 151665 for Qwen3-Embedding). The tokenizer knows 4 more ids, the
   * special tokens `<think>`, `</think>`, `<tool_response>`, `</tool_response>` (151665-151668), which
   * Hugging Face's pipeline cannot embed either (index out of range): such an input is refused alone,
   * naming it, instead of failing the batch it would share with other clients' inputs.
   */
  private assertEmbeddable(
    sequences: Int32Array[],
    request: EmbeddingsRequestDto,
    instruction: InstructionSource | undefined,
  ): void {
    const vocabSize = this.model.info.vocabSize;
    for (let index = 0; index < sequences.length; index += 1) {
      const ids = sequences[index];
      let bad = -1;
      for (let j = 0; j < ids.length; j += 1) {
        if (ids[j] >= vocabSize) {
          bad = j;
          break;
        }
      }
      if (bad < 0) continue;
      const { input } = request;
      if (typeof input !== 'string' && typeof input[0] !== 'string') {
        const where = typeof input[0] === 'number' ? `input[${bad}]` : `input[${index}][${bad}]`;
        throw new InvalidRequestError(
          `${where} is token id ${ids[bad]}, outside the model's vocabulary (0..${vocabSize - 1})`,
          'input',
        );
      }
      const found = [...new Set(Array.from(ids.subarray(bad)).filter((id) => id >= vocabSize))].map(
        (id) => this.tokenizer.tokenText(id) ?? `token id ${id}`,
      );
      const listed = found.map((token) => `\`${token}\``).join(', ');
      const what = found.length === 1 ? 'a special token' : 'special tokens';
      if (instruction && found.some((token) => instruction.text.includes(token))) {
        const whose =
          instruction.param === 'model'
            ? `the instruction of the model name '${request.model}'`
            : 'instruction';
        throw new InvalidRequestError(
          `${whose} contains ${listed}, ${what} this model cannot embed; remove ${found.length === 1 ? 'it' : 'them'}`,
          instruction.param,
        );
      }
      throw new InvalidRequestError(
        `input[${index}] contains ${listed}, ${what} this model cannot embed; remove ${found.length === 1 ? 'it' : 'them'}`,
        'input',
      );
    }
  }

  private applyLengthPolicy(sequences: Int32Array[], truncate: boolean): Int32Array[] {
    const limit = this.model.maxInputTokens;
    return sequences.map((sequence, index) => {
      if (sequence.length <= limit) {
        return sequence;
      }
      if (truncate) {
        return this.tokenizer.truncate(sequence, limit);
      }
      throw new InvalidRequestError(
        `input[${index}] has ${sequence.length} tokens, more than this model's maximum of ${limit} per input; shorten it or send truncate=true`,
        'input',
        'context_length_exceeded',
      );
    });
  }
}

/**
 * The request with every option sent as null made absent. Validation lets null through for
 * optional fields (class-validator's IsOptional), and clients send null for an option they leave
 * unset, so null means the default, as absence does: `dimensions: null` is the configured size,
 * not a zero-length row, and `instruction: null` no instruction.
 */
export function withoutNulls<T extends object>(request: T): T {
  const entries = Object.entries(request) as [keyof T, unknown][];
  if (entries.every(([, value]) => value !== null)) return request;
  return Object.fromEntries(entries.filter(([, value]) => value !== null)) as unknown as T;
}

/** The instruction a request's texts were prompted with, and the field that brought it. */
interface InstructionSource {
  text: string;
  param: 'instruction' | 'model';
}

/** X-Request-Deadline-Ms: how long the client will wait, in ms; absent means REQUEST_DEADLINE_MS. */
export const DEADLINE_HEADER = 'x-request-deadline-ms';
const MAX_DEADLINE_MS = 3_600_000;

/** The deadline header's value in ms, or undefined when absent; anything but 1..3600000 is 400. */
export function parseDeadlineHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = typeof value === 'string' && /^\s*\d{1,7}\s*$/.test(value) ? Number(value) : NaN;
  if (!(ms >= 1 && ms <= MAX_DEADLINE_MS)) {
    throw new InvalidRequestError(
      `The X-Request-Deadline-Ms header must be a whole number of milliseconds from 1 to ${MAX_DEADLINE_MS}`,
      'X-Request-Deadline-Ms',
      'invalid_value',
    );
  }
  return ms;
}

/** A cheap lower bound of an input's token count, with the end-of-text of each input. */
function minimumTokens(input: EmbeddingsRequestDto['input']): number {
  if (typeof input === 'string') return 1 + (input.length >> 3);
  let tokens = 0;
  for (const item of input as unknown[]) {
    tokens += typeof item === 'string' ? 1 + (item.length >> 3) : Array.isArray(item) ? item.length : 1;
  }
  return tokens;
}
