/**
 * Errors Node's HTTP server raises before routing, and routing errors, reach the client in the
 * OpenAI envelope: raw sockets against the real app (no model needed: none of these reach it).
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { RunningApp } from '../apps/api/src/app.factory';
import { RawHttpConnection, RawResponse, rawRequest } from './support/raw-http';
import { startTestApp, TEST_API_KEY } from './support/test-app';

const AUTH = `Authorization: Bearer ${TEST_API_KEY}\r\n`;

function expectEnvelope(response: RawResponse, status: number, code: string): void {
  expect(response.statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const { error } = JSON.parse(response.body) as { error: Record<string, unknown> };
  expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(error).toMatchObject({ type: 'invalid_request_error', code });
  expect(typeof error.message).toBe('string');
}

describe('HTTP protocol errors in the OpenAI envelope (raw sockets)', () => {
  let running: RunningApp;
  let port: number;

  beforeAll(async () => {
    running = await startTestApp({ BODY_LIMIT: '64kb' }, { load: false });
    port = ((running.app.getHttpServer() as Server).address() as AddressInfo).port;
  });

  afterAll(async () => {
    await running?.app.close();
  });

  const post = (headers: string, body = '') =>
    `POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Type: application/json\r\n${headers}\r\n${body}`;

  it.each([
    ['an unparsable Content-Length', post('Content-Length: 1x\r\n', '{}')],
    ['two different Content-Lengths', post('Content-Length: 2\r\nContent-Length: 3\r\n', '{} ')],
    [
      'Content-Length with Transfer-Encoding',
      post('Content-Length: 2\r\nTransfer-Encoding: chunked\r\n', '2\r\n{}\r\n0\r\n\r\n'),
    ],
    ['a chunk size that is not hex', post('Transfer-Encoding: chunked\r\n', 'zz\r\n{}\r\n0\r\n\r\n')],
    ['a chunk without its CRLF', post('Transfer-Encoding: chunked\r\n', '2\r\n{}XX0\r\n\r\n')],
    ['a request line that is not HTTP', 'HELLO\r\n\r\n'],
    ['a header without a colon', 'GET /health/live HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n'],
  ])('answers %s with 400 and closes', async (_label, request) => {
    const connection = await RawHttpConnection.open(port);
    try {
      connection.write(request);
      const response = await connection.response();
      expectEnvelope(response, 400, 'invalid_http_request');
      expect(response.headers.connection).toBe('close');
      await connection.closedByServer();
    } finally {
      connection.destroy();
    }
  });

  it('answers headers larger than Node allows with 431', async () => {
    const response = await rawRequest(
      port,
      `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expectEnvelope(response, 431, 'request_headers_too_large');
    expect(response.headers.connection).toBe('close');
  });

  it('answers a body over BODY_LIMIT with 413, declared or chunked', async () => {
    const big = JSON.stringify({ input: 'x'.repeat(70_000) });
    expectEnvelope(
      await rawRequest(port, post(`Content-Length: ${big.length}\r\n`, big)),
      413,
      'request_too_large',
    );
    const chunked = `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`;
    expectEnvelope(
      await rawRequest(port, post('Transfer-Encoding: chunked\r\n', chunked)),
      413,
      'request_too_large',
    );
  });

  it('answers chunk extensions over the parser limit with 413', async () => {
    const chunked = `2;ext=${'a'.repeat(20_000)}\r\n{}\r\n0\r\n\r\n`;
    const response = await rawRequest(port, post('Transfer-Encoding: chunked\r\n', chunked));
    expectEnvelope(response, 413, 'request_too_large');
    expect(response.headers.connection).toBe('close');
  });

  it('answers an Expect other than 100-continue with 417', async () => {
    const response = await rawRequest(port, post('Expect: 200-ok\r\nContent-Length: 2\r\n', '{}'));
    expectEnvelope(response, 417, 'expectation_failed');
    expect(response.headers.connection).toBe('close');
  });

  it('answers an HTTP/1.1 request without Host with 400 (Node would send an empty one)', async () => {
    const response = await rawRequest(port, `GET /v1/models HTTP/1.1\r\n${AUTH}\r\n`);
    expectEnvelope(response, 400, 'invalid_http_request');
    expect(response.headers.connection).toBe('close');
    // HTTP/1.0 needs no Host.
    const old = await rawRequest(port, `GET /health/live HTTP/1.0\r\n\r\n`);
    expect(old.statusLine).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('answers CONNECT with 405 (Node would close the socket without an answer)', async () => {
    const response = await rawRequest(
      port,
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
    );
    expectEnvelope(response, 405, 'method_not_allowed');
  });

  it('lets Expect: 100-continue through: 100, then the answer', async () => {
    const connection = await RawHttpConnection.open(port);
    try {
      const body = JSON.stringify({ input: 'hello' });
      connection.write(post(`Expect: 100-continue\r\nContent-Length: ${body.length}\r\n`));
      expect((await connection.response()).status).toBe(100);
      connection.write(body);
      // The model is not loaded in this app: the request got through to the service, which says so.
      const response = await connection.response();
      expect(response.status).toBe(503);
      expect(JSON.parse(response.body).error.code).toBe('model_not_ready');
    } finally {
      connection.destroy();
    }
  });

  it.each([
    ['headers stall', 'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Le'],
    ['body stalls', post('Content-Length: 20\r\n', '{"input":')],
  ])('answers a request whose %s with 408', async (_part, partial) => {
    const server = running.app.getHttpServer() as Server;
    const saved = { headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout };
    server.headersTimeout = 500;
    server.requestTimeout = 1_000;
    const connection = await RawHttpConnection.open(port);
    try {
      connection.write(partial);
      const response = await connection.response(5_000);
      expectEnvelope(response, 408, 'request_timeout');
      await connection.closedByServer();
    } finally {
      connection.destroy();
      Object.assign(server, saved);
    }
  });

  it('answers unknown routes and wrong methods with 404 in the envelope', async () => {
    expectEnvelope(await rawRequest(port, 'GET /v2/nothing HTTP/1.1\r\nHost: x\r\n\r\n'), 404, 'not_found');
    expectEnvelope(
      await rawRequest(port, `GET /v1/embeddings HTTP/1.1\r\nHost: x\r\n${AUTH}\r\n`),
      404,
      'not_found',
    );
    expectEnvelope(await rawRequest(port, 'DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n'), 404, 'not_found');
  });

  it('keeps serving on other connections', async () => {
    const response = await rawRequest(port, 'GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(response.status).toBe(200);
  });
});
