import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Params } from 'nestjs-pino';
import { destination } from 'pino';
import { REQUEST_ID_HEADER, resolveRequestId } from './request-id';

const QUIET_PATHS = ['/health', '/metrics'];

function pathOf(url: string | undefined): string {
  // Query strings never reach the logs: a key passed as ?access_token= must not be written anywhere.
  return (url ?? '').split('?')[0];
}

/**
 * Structured JSON request logs with request ids (the client's x-request-id when sane, echoed back).
 * Only method, path, status and timings are logged: never headers (keys) nor bodies (input text).
 */
export function createLoggerParams(level: string): Params {
  return {
    pinoHttp: [
      {
        level,
        genReqId: (req: IncomingMessage, res: ServerResponse) => {
          const id = resolveRequestId(req.headers[REQUEST_ID_HEADER]);
          res.setHeader(REQUEST_ID_HEADER, id);
          return id;
        },
        serializers: {
          req: (req: { id: string; method: string; url: string; remoteAddress?: string }) => ({
            id: req.id,
            method: req.method,
            path: pathOf(req.url),
            remoteAddress: req.remoteAddress,
          }),
          res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
        },
        redact: { paths: ['req.headers', 'res.headers', 'authorization'], remove: true },
        autoLogging: {
          ignore: (req: IncomingMessage) => QUIET_PATHS.some((prefix) => pathOf(req.url).startsWith(prefix)),
        },
        customLogLevel: (_req: IncomingMessage, res: ServerResponse, error?: Error) =>
          error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
      },
      // Synchronous: the last lines before an exit (shutdown, failed load) must not be lost.
      destination({ dest: 1, sync: true }),
    ],
  };
}
