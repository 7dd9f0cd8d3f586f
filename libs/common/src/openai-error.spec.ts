import { BadRequestException, NotFoundException } from '@nestjs/common';
import { EngineError } from './engine.error';
import {
  AuthenticationError,
  InvalidRequestError,
  ModelNotFoundError,
  ProtocolError,
  QueueFullError,
  RequestTooLargeError,
  ServiceUnavailableError,
} from './domain.error';
import { toOpenAIError } from './openai-error';

describe(toOpenAIError.name, () => {
  it.each([
    [
      new InvalidRequestError('bad', 'input'),
      400,
      { type: 'invalid_request_error', param: 'input', message: 'bad' },
    ],
    [
      new AuthenticationError('who?'),
      401,
      { type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
    ],
    [new ModelNotFoundError('gpt'), 404, { code: 'model_not_found', param: 'model' }],
    [new NotFoundException('Cannot GET /x'), 404, { code: 'not_found', message: 'Cannot GET /x' }],
    [new RequestTooLargeError('big'), 413, { code: 'request_too_large', param: null }],
    [
      new RequestTooLargeError('documents[2] is too long', 'documents', 'context_length_exceeded'),
      413,
      { code: 'context_length_exceeded', param: 'documents' },
    ],
    [new QueueFullError('full', 3), 429, { type: 'rate_limit_exceeded', code: 'queue_full' }],
    [
      new QueueFullError('late', 2, 'deadline_exceeded'),
      429,
      { type: 'rate_limit_exceeded', code: 'deadline_exceeded' },
    ],
    [
      new ServiceUnavailableError('loading', 'model_not_ready', 5),
      503,
      { type: 'server_error', code: 'model_not_ready' },
    ],
    [new EngineError('INVALID_ARGUMENT', 'id out of range'), 400, { type: 'invalid_request_error' }],
    [new EngineError('OUT_OF_MEMORY', 'cuda oom'), 503, { code: 'engine_out_of_memory' }],
    [new EngineError('DEVICE_FAILED', 'xid 79'), 503, { code: 'engine_unavailable' }],
    [new EngineError('ENGINE_DISPOSED', 'gone'), 503, { code: 'engine_unavailable' }],
    [
      new EngineError('INTERNAL', 'at::Tensor secrets'),
      500,
      { type: 'server_error', code: 'internal_error' },
    ],
    [new BadRequestException('Unexpected token'), 400, { message: 'Invalid request body: Unexpected token' }],
    [new ProtocolError('bad framing', 'malformed'), 400, { code: 'invalid_http_request' }],
    [new ProtocolError('slow', 'timeout'), 408, { code: 'request_timeout' }],
    [new ProtocolError('big', 'too_large'), 413, { code: 'request_too_large' }],
    [new ProtocolError('big', 'headers_too_large'), 431, { code: 'request_headers_too_large' }],
    [new ProtocolError('expect', 'expectation_failed'), 417, { code: 'expectation_failed' }],
  ])('%s -> %i', (error, status, fields) => {
    const mapped = toOpenAIError(error);
    expect(mapped.status).toBe(status);
    expect(mapped.body.error).toMatchObject(fields);
    expect(Object.keys(mapped.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  });

  it('never leaks the message of an unexpected error', () => {
    const mapped = toOpenAIError(new TypeError("Cannot read properties of undefined (reading 'secret')"));
    expect(mapped.status).toBe(500);
    expect(mapped.internal).toBe(true);
    expect(mapped.body.error.message).not.toContain('secret');
    expect(toOpenAIError(new EngineError('INTERNAL', 'at::Tensor secrets')).body.error.message).not.toContain(
      'Tensor',
    );
  });

  it('sets Retry-After for a full queue and WWW-Authenticate for a bad key', () => {
    expect(toOpenAIError(new QueueFullError('full', 7)).headers).toEqual({ 'retry-after': '7' });
    expect(toOpenAIError(new AuthenticationError('x')).headers).toEqual({ 'www-authenticate': 'Bearer' });
  });

  it("maps body-parser's errors: too large to 413, others by their status", () => {
    const tooLarge = Object.assign(new Error('request entity too large'), {
      status: 413,
      type: 'entity.too.large',
    });
    expect(toOpenAIError(tooLarge).status).toBe(413);
    const charset = Object.assign(new Error('unsupported charset "X"'), {
      status: 415,
      expose: true,
      type: 'charset.unsupported',
    });
    expect(toOpenAIError(charset)).toMatchObject({
      status: 415,
      body: { error: { code: 'charset.unsupported' } },
    });
  });
});
