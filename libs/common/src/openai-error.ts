import { HttpException, HttpStatus } from '@nestjs/common';
import {
  AuthenticationError,
  InvalidRequestError,
  ModelNotFoundError,
  ProtocolError,
  ProtocolProblem,
  QueueFullError,
  RequestTooLargeError,
  ServiceUnavailableError,
} from './domain.error';
import { EngineError } from './engine.error';

/** The OpenAI error envelope: every error response has this body. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface MappedError {
  status: number;
  body: OpenAIErrorBody;
  headers: Record<string, string>;
  /** True for failures the operator should look at (logged with the stack; never sent to the client). */
  internal: boolean;
}

const INTERNAL_MESSAGE = 'The server had an error while processing your request. Sorry about that!';

function envelope(
  status: number,
  type: string,
  message: string,
  code: string | null = null,
  param: string | null = null,
  headers: Record<string, string> = {},
  internal = false,
): MappedError {
  return { status, body: { error: { message, type, param, code } }, headers, internal };
}

function unavailable(message: string, code: string, retryAfterSeconds?: number): MappedError {
  const headers: Record<string, string> = retryAfterSeconds
    ? { 'retry-after': String(retryAfterSeconds) }
    : {};
  return envelope(HttpStatus.SERVICE_UNAVAILABLE, 'server_error', message, code, null, headers);
}

/** Errors from body-parser and other http-errors producers carry a numeric status and an `expose` flag. */
function isHttpError(error: unknown): error is Error & { status: number; expose?: boolean; type?: string } {
  return error instanceof Error && typeof (error as { status?: unknown }).status === 'number';
}

const PROTOCOL_STATUS: Record<ProtocolProblem, [status: number, code: string]> = {
  malformed: [400, 'invalid_http_request'],
  timeout: [408, 'request_timeout'],
  too_large: [413, 'request_too_large'],
  headers_too_large: [431, 'request_headers_too_large'],
  expectation_failed: [417, 'expectation_failed'],
  method_not_allowed: [405, 'method_not_allowed'],
};

function fromEngineError(error: EngineError): MappedError {
  switch (error.code) {
    case 'INVALID_ARGUMENT':
      return envelope(400, 'invalid_request_error', error.message, 'invalid_value');
    case 'OUT_OF_MEMORY':
      // Transient: the same request usually fits once concurrent batches drain.
      return unavailable(
        'The engine ran out of device memory for this batch; retry shortly.',
        'engine_out_of_memory',
        1,
      );
    case 'DEVICE_FAILED':
    case 'ENGINE_DISPOSED':
    case 'ENGINE_NOT_LOADED':
      return unavailable('The embedding engine is unavailable.', 'engine_unavailable');
    default:
      return envelope(500, 'server_error', INTERNAL_MESSAGE, 'internal_error', null, {}, true);
  }
}

function fromHttpException(exception: HttpException): MappedError {
  const status = exception.getStatus();
  const response = exception.getResponse();
  const detail =
    typeof response === 'string'
      ? response
      : Array.isArray((response as { message?: unknown }).message)
        ? ((response as { message: string[] }).message[0] ?? exception.message)
        : String((response as { message?: unknown }).message ?? exception.message);
  if (status === HttpStatus.NOT_FOUND) {
    return envelope(status, 'invalid_request_error', detail, 'not_found');
  }
  if (status === HttpStatus.BAD_REQUEST) {
    // Nest turns body-parser's SyntaxError into a plain BadRequestException.
    return envelope(status, 'invalid_request_error', `Invalid request body: ${detail}`, 'invalid_body');
  }
  if (status >= 500) {
    return envelope(status, 'server_error', INTERNAL_MESSAGE, 'internal_error', null, {}, true);
  }
  return envelope(status, 'invalid_request_error', detail);
}

/** Maps anything thrown while serving a request to a status, the OpenAI envelope and extra headers. */
export function toOpenAIError(exception: unknown): MappedError {
  if (exception instanceof InvalidRequestError) {
    return envelope(400, 'invalid_request_error', exception.message, exception.code, exception.param);
  }
  if (exception instanceof AuthenticationError) {
    return envelope(401, 'invalid_request_error', exception.message, 'invalid_api_key', null, {
      'www-authenticate': 'Bearer',
    });
  }
  if (exception instanceof ModelNotFoundError) {
    return envelope(404, 'invalid_request_error', exception.message, 'model_not_found', 'model');
  }
  if (exception instanceof RequestTooLargeError) {
    return envelope(413, 'invalid_request_error', exception.message, exception.code, exception.param);
  }
  if (exception instanceof ProtocolError) {
    const [status, code] = PROTOCOL_STATUS[exception.problem];
    return envelope(status, 'invalid_request_error', exception.message, code);
  }
  if (exception instanceof QueueFullError) {
    return envelope(429, 'rate_limit_exceeded', exception.message, exception.code, null, {
      'retry-after': String(exception.retryAfterSeconds),
    });
  }
  if (exception instanceof ServiceUnavailableError) {
    return unavailable(exception.message, exception.reason, exception.retryAfterSeconds);
  }
  if (exception instanceof EngineError) {
    return fromEngineError(exception);
  }
  if (exception instanceof HttpException) {
    return fromHttpException(exception);
  }
  if (isHttpError(exception)) {
    if (exception.status === HttpStatus.PAYLOAD_TOO_LARGE) {
      return envelope(413, 'invalid_request_error', 'The request body is too large.', 'request_too_large');
    }
    if (exception.status < 500 && exception.expose !== false) {
      return envelope(exception.status, 'invalid_request_error', exception.message, exception.type ?? null);
    }
  }
  return envelope(500, 'server_error', INTERNAL_MESSAGE, 'internal_error', null, {}, true);
}
