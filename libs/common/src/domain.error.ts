/**
 * Domain errors: plain classes free of HTTP. The global exception filter maps each to a status and the
 * OpenAI error envelope; services throw these and never an HttpException.
 */

/** The request is malformed or asks for something the model cannot do (400). */
export class InvalidRequestError extends Error {
  override readonly name = 'InvalidRequestError';
  constructor(
    message: string,
    /** The request field at fault ('input', 'dimensions', ...), or null. */
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** Missing or wrong API key (401). */
export class AuthenticationError extends Error {
  override readonly name = 'AuthenticationError';
}

/** The requested model is not the one served, nor one of its aliases (404). */
export class ModelNotFoundError extends Error {
  override readonly name = 'ModelNotFoundError';
  constructor(readonly model: string) {
    super(`The model '${model}' does not exist or you do not have access to it.`);
  }
}

/** The request is larger than a configured limit: body bytes or total tokens (413). */
export class RequestTooLargeError extends Error {
  override readonly name = 'RequestTooLargeError';
  constructor(
    message: string,
    /** The request field at fault, when one is (e.g. 'documents' for an over-long pair). */
    readonly param: string | null = null,
    readonly code: string = 'request_too_large',
  ) {
    super(message);
  }
}

export type ProtocolProblem =
  'malformed' | 'timeout' | 'headers_too_large' | 'too_large' | 'expectation_failed' | 'method_not_allowed';

/**
 * The HTTP message itself is unusable, found by Node's parser before routing: bad framing (400), not
 * received in time (408), headers too large (431), chunk extensions too large (413), an `Expect`
 * other than 100-continue (417), a method this server never serves (CONNECT: 405).
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    message: string,
    readonly problem: ProtocolProblem,
  ) {
    super(message);
  }
}

/**
 * The server is overloaded (429): the queue is full or holds more work than the request's deadline
 * allows (`queue_full`), or the request's deadline passed before it could run (`deadline_exceeded`).
 * Nothing of it ran; the client should retry after `retryAfterSeconds`.
 */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    readonly code: 'queue_full' | 'deadline_exceeded' = 'queue_full',
  ) {
    super(message);
  }
}

export type UnavailableReason =
  'model_not_ready' | 'engine_unavailable' | 'engine_out_of_memory' | 'shutting_down';

/** The service cannot serve right now: loading, warming up, engine failed, shutting down (503). */
export class ServiceUnavailableError extends Error {
  override readonly name = 'ServiceUnavailableError';
  constructor(
    message: string,
    readonly reason: UnavailableReason,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

/** The client went away before its work ran; nobody is left to answer. */
export class RequestAbortedError extends Error {
  override readonly name = 'RequestAbortedError';
  constructor() {
    super('The client closed the request');
  }
}
