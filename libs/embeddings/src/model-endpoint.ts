import { applyDecorators } from '@nestjs/common';
import { ApiHeader, ApiResponse } from '@nestjs/swagger';
import type { Response } from 'express';
import { OpenAIErrorDto } from '@app/common';
import { EmbeddingTimings, parseDeadlineHeader } from './embeddings.service';

type ErrorStatus = 400 | 401 | 404 | 413 | 429 | 503;

const ERROR_DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: 'Invalid request; `param` names the field.',
  401: 'Missing or wrong API key.',
  404: 'Unknown model.',
  413: 'Body or token limit exceeded.',
  429: 'Overloaded: queue full or deadline out of reach; see Retry-After.',
  503: 'Loading, engine failure or shutting down.',
};

/** The error responses of an endpoint that looks up the model; `descriptions` says what one means here. */
export function ApiModelErrors(descriptions: Partial<Record<ErrorStatus, string>> = {}): MethodDecorator {
  const statuses: ErrorStatus[] = [400, 401, 404, 413, 503];
  return applyDecorators(
    ...statuses.map((status) =>
      ApiResponse({
        status,
        type: OpenAIErrorDto,
        description: descriptions[status] ?? ERROR_DESCRIPTIONS[status],
      }),
    ),
  );
}

/**
 * An endpoint that runs the engine: the deadline header, and the refusals under overload (429) on
 * top of the model endpoints' errors.
 */
export function ApiEngineErrors(descriptions: Partial<Record<400 | 413, string>> = {}): MethodDecorator {
  return applyDecorators(
    ApiHeader({
      name: 'X-Request-Deadline-Ms',
      required: false,
      description:
        'How long the client will wait, 1..3600000 ms (default REQUEST_DEADLINE_MS). Work that cannot be done in time is refused with 429 and Retry-After instead of run late.',
    }),
    ApiModelErrors(descriptions),
    ApiResponse({ status: 429, type: OpenAIErrorDto, description: ERROR_DESCRIPTIONS[429] }),
  );
}

const ms = (value: number) => value.toFixed(1);

/**
 * One engine request behind an HTTP request: the client's X-Request-Deadline-Ms (400 when malformed),
 * an abort signal that drops the queued work of a client that disconnects, and the timing headers of
 * the outcome on the response.
 */
export async function runTimed<T extends { timings: EmbeddingTimings }>(
  deadlineHeader: string | undefined,
  res: Response,
  work: (signal: AbortSignal, deadlineMs: number | undefined) => Promise<T>,
): Promise<T> {
  const deadlineMs = parseDeadlineHeader(deadlineHeader);
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const outcome = await work(abort.signal, deadlineMs);
  const { timings } = outcome;
  res.set({
    'x-tokenization-time-ms': ms(timings.tokenizationMs),
    'x-queue-time-ms': ms(timings.queueMs),
    'x-inference-time-ms': ms(timings.inferenceMs),
    'x-total-tokens': String(timings.totalTokens),
    'x-forward-batches': String(timings.batches),
  });
  return outcome;
}
