import * as net from 'node:net';

/** One HTTP response as read off the wire. */
export interface WireResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** What came back on a raw connection: every final response in order, or how it ended without one. */
export interface RawExchange {
  responses: WireResponse[];
  /** Bytes after the last response that do not parse as one (truncated or garbage). */
  unparsed: number;
  /** 'closed', 'timeout', or the socket error's code (ECONNRESET...). */
  ending: string;
}

/** Splits bytes into the responses they hold (`1xx` are skipped) and counts the bytes left over. */
function parseResponses(data: Buffer): { responses: WireResponse[]; rest: number } {
  const responses: WireResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const lines = data.subarray(at, headEnd).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!match) break;
    const status = Number(match[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let bodyStart = headEnd + 4;
    let body: Buffer;
    if (status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunks: Buffer[] = [];
      for (;;) {
        const sizeEnd = data.indexOf('\r\n', bodyStart);
        if (sizeEnd < 0) return { responses, rest: data.length - at };
        const size = parseInt(data.subarray(bodyStart, sizeEnd).toString('latin1'), 16);
        if (!Number.isFinite(size)) return { responses, rest: data.length - at };
        if (size === 0) {
          bodyStart = sizeEnd + 4;
          break;
        }
        chunks.push(data.subarray(sizeEnd + 2, sizeEnd + 2 + size));
        bodyStart = sizeEnd + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (bodyStart + length > data.length) return { responses, rest: data.length - at };
      body = data.subarray(bodyStart, bodyStart + length);
      bodyStart += length;
    } else {
      // No length: the body runs to the end of the connection.
      body = data.subarray(bodyStart);
      bodyStart = data.length;
    }
    if (status >= 200) responses.push({ status, headers, body });
    at = bodyStart;
  }
  return { responses, rest: data.length - at };
}

/**
 * Writes bytes on a fresh loopback connection, optionally half-closes, and reads until the server
 * closes (the requests ask for `Connection: close`) or `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  bytes: Buffer,
  options: { halfClose: boolean; timeoutMs: number },
): Promise<RawExchange> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (ending: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const { responses, rest } = parseResponses(Buffer.concat(chunks));
      resolve({ responses, unparsed: rest, ending });
    };
    const timer = setTimeout(() => finish('timeout'), options.timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    socket.on('close', () => finish('closed'));
    socket.write(bytes);
    if (options.halfClose) socket.end();
  });
}
