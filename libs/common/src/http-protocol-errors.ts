import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ProtocolError } from './domain.error';
import { toOpenAIError } from './openai-error';

const CLOSE_LINGER_MS = 1_000;

/** What Node's parser reports (`err.code`, llhttp's `err.reason`) as a client-facing error. */
function protocolErrorOf(error: Error & { code?: string; reason?: string }): ProtocolError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ProtocolError('The request was not received in time.', 'timeout');
    case 'HPE_HEADER_OVERFLOW':
      return new ProtocolError('The request headers are too large.', 'headers_too_large');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new ProtocolError('The chunk extensions of the request body are too large.', 'too_large');
    default: {
      // llhttp's reasons name the framing rule broken ("Duplicate Content-Length", ...), nothing internal.
      const reason = typeof error.reason === 'string' && error.reason ? `: ${error.reason}` : '';
      return new ProtocolError(`The request is not valid HTTP/1.1${reason}.`, 'malformed');
    }
  }
}

/** A complete HTTP/1.1 response in the OpenAI envelope that closes the connection. */
export function rawErrorResponse(error: ProtocolError): string {
  const { status, body } = toOpenAIError(error);
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    'Connection: close\r\n\r\n' +
    json
  );
}

/** Answers a request the app never sees in the envelope, closing the connection after it. */
function answerAndClose(res: ServerResponse, error: ProtocolError): void {
  const { status, body } = toOpenAIError(error);
  const json = JSON.stringify(body);
  res.shouldKeepAlive = false;
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(json),
    Connection: 'close',
  });
  res.end(json);
}

/** Answers on a raw socket and closes it, giving the client a moment to read the answer. */
function endWithError(socket: Duplex, error: ProtocolError): void {
  socket.end(rawErrorResponse(error));
  // Closing at once could reset the connection while the client is still sending, and lose the
  // answer; it gets a moment to read it and close.
  const linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
}

/**
 * Errors Node's HTTP server raises before a request reaches Express (bad framing, 408, 431, 413 of
 * chunk extensions) and `Expect` headers other than 100-continue (417) are answered in the OpenAI
 * envelope instead of Node's bodiless defaults. Like Node's own handler, nothing is written once a
 * response on that connection has started.
 */
export function answerProtocolErrorsInEnvelope(server: Server): void {
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (error: Error & { code?: string }, socket: Duplex) => {
    if (answered.has(socket)) return; // the parser reports again on each later chunk
    answered.add(socket);
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    endWithError(socket, protocolErrorOf(error));
  });
  // CONNECT never reaches Express: without a listener Node closes the socket with no answer.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    endWithError(
      socket,
      new ProtocolError('CONNECT is not supported: this is an HTTP API, not a proxy.', 'method_not_allowed'),
    );
  });
  // Node answers an HTTP/1.1 request without Host with its own bodiless 400 before any listener
  // runs. With that check off (a server field, read per request), the app's handlers (Express) are
  // wrapped so such a request is answered here in the envelope and never reaches them.
  Object.assign(server, { requireHostHeader: false });
  const handlers = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      answerAndClose(
        res,
        new ProtocolError('The request is not valid HTTP/1.1: it has no Host header.', 'malformed'),
      );
      return;
    }
    for (const handler of handlers) handler.call(server, req, res);
  });
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    answerAndClose(res, new ProtocolError("Only 'Expect: 100-continue' is supported.", 'expectation_failed'));
  });
}
