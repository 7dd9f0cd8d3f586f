import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import { Params, PARAMS_PROVIDER_TOKEN } from 'nestjs-pino';
import { destination, DestinationStream } from 'pino';
import { HttpLogger, Options, pinoHttp } from 'pino-http';
import { REQUEST_ID_HEADER, resolveRequestId } from './request-id';

const QUIET_PATHS = ['/health', '/metrics'];

function pathOf(url: string | undefined): string {
  // Query strings never reach the logs: a key passed as ?access_token= must not be written anywhere.
  return (url ?? '').split('?')[0];
}

/**
 * Structured JSON request logs with request ids (the client's x-request-id when sane, echoed back).
 * Only method, path, status and timings are logged: never headers (keys) nor bodies (input text).
 * nestjs-pino's LoggerModule gives the app its logger; its own request middleware is off
 * (`useExisting` with no routes) and AccessLogMiddleware writes the request lines with these same
 * options. That middleware ran every request inside an AsyncLocalStorage, so that app logs written
 * during a request carried it, which puts a hook on every promise the process makes (~20 µs of a
 * short query, bench/server-overhead.ts); the one such log, the filter's 500, names its request.
 */
export function createLoggerParams(level: string): Params {
  return {
    useExisting: true,
    forRoutes: [],
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

/** The request lines: pino-http with the options of `createLoggerParams`. */
@Injectable()
export class AccessLogMiddleware implements NestMiddleware {
  private readonly log: HttpLogger;

  constructor(@Inject(PARAMS_PROVIDER_TOKEN) params: Params) {
    const [options, stream] = params.pinoHttp as [Options, DestinationStream];
    // pino-http rewrites the options it is given (wraps the serializers, deletes what it read), and
    // the app's logger is made from the same ones.
    this.log = pinoHttp({ ...options, serializers: { ...options.serializers } }, stream);
  }

  use(req: IncomingMessage, res: ServerResponse, next: () => void): void {
    this.log(req, res, next);
  }
}
