import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import { Params, PARAMS_PROVIDER_TOKEN } from 'nestjs-pino';
import { destination, DestinationStream, Logger, pino } from 'pino';
import type { Options } from 'pino-http';
import { REQUEST_ID_HEADER, resolveRequestId } from './request-id';

const QUIET_PATHS = ['/health', '/metrics'];

function pathOf(url: string | undefined): string {
  // Query strings never reach the logs: a key passed as ?access_token= must not be written anywhere.
  return (url ?? '').split('?')[0];
}

/** Where the global filter leaves the OpenAI error code of a failed request, for the request line. */
export interface ResponseLocals {
  errorCode?: string;
}

type LoggedRequest = IncomingMessage & { originalUrl?: string; ip?: string };
type LoggedResponse = ServerResponse & { err?: Error; locals?: ResponseLocals };

/** Per-request figures of an embeddings answer, as its headers carry them, and the error code. */
function outcomeOf(res: LoggedResponse): Record<string, number | string> {
  const fields: Record<string, number | string> = {};
  const tokens = res.getHeader('x-total-tokens');
  if (tokens !== undefined) {
    fields.tokens = Number(tokens);
    fields.tokenizationMs = Number(res.getHeader('x-tokenization-time-ms'));
    fields.queueMs = Number(res.getHeader('x-queue-time-ms'));
    fields.inferenceMs = Number(res.getHeader('x-inference-time-ms'));
  }
  const code = res.locals?.errorCode;
  if (code) fields.errorCode = code;
  return fields;
}

/** Who writes the request lines: AccessLogMiddleware (the app's), or nestjs-pino's own pino-http. */
export type RequestLineWriter = 'access-log' | 'nestjs-pino';

/**
 * Structured JSON request logs with request ids (the client's x-request-id when sane, echoed back).
 * Only method, path, client address (Nginx's X-Forwarded-For through Express's trust proxy), status,
 * tokens, timings and the error code are logged: never headers (keys) nor bodies (input text).
 * nestjs-pino's LoggerModule gives the app its logger. With 'access-log' its own request middleware
 * is off (`useExisting` with no routes) and AccessLogMiddleware writes the request lines with these
 * same options: nestjs-pino's ran every request inside an AsyncLocalStorage, so that app logs written
 * during a request carried it, which puts a hook on every promise the process makes, and pino-http
 * made a child logger per request; the one app log written during a request, the filter's 500, names
 * its request. With 'nestjs-pino' its middleware (pino-http, then the AsyncLocalStorage) writes them
 * on every route; bench/bypass-overhead.ts measures the two against each other.
 */
export function createLoggerParams(level: string, writer: RequestLineWriter = 'access-log'): Params {
  return {
    ...(writer === 'access-log' ? { useExisting: true, forRoutes: [] } : {}),
    pinoHttp: [
      {
        level,
        genReqId: (req: IncomingMessage, res: ServerResponse) => {
          const id = resolveRequestId(req.headers[REQUEST_ID_HEADER]);
          res.setHeader(REQUEST_ID_HEADER, id);
          return id;
        },
        // pino-http hands its serializers the request and response as pino-std-serializers maps
        // them, the objects themselves under `raw`.
        serializers: {
          req: (req: {
            id: string;
            method: string;
            url: string;
            remoteAddress?: string;
            raw?: LoggedRequest;
          }) => ({
            id: req.id,
            method: req.method,
            path: pathOf(req.url),
            remoteAddress: req.raw?.ip ?? req.remoteAddress,
          }),
          res: (res: { statusCode: number | null; raw?: LoggedResponse }) => ({
            statusCode: res.statusCode,
            ...(res.raw ? outcomeOf(res.raw) : {}),
          }),
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

type Serializer = (value: never) => unknown;
type Level = 'info' | 'warn' | 'error' | 'silent';

/**
 * The request lines, as pino-http writes them with the options of `createLoggerParams` (its fields,
 * levels and messages: 'request completed'; 'request aborted' when the client left first; 'request
 * errored' with an error for a 5xx), written with pino directly: pino-http made a child logger for
 * every request and put three listeners on every response (measurable in a short query:
 * bench/server-overhead.ts). logging.config.spec.ts holds the lines to pino-http's.
 */
@Injectable()
export class AccessLogMiddleware implements NestMiddleware {
  private readonly logger: Logger;
  private readonly requestId: (req: IncomingMessage, res: ServerResponse) => string;
  private readonly serializeRequest: Serializer;
  private readonly serializeResponse: Serializer;
  private readonly quiet: (req: IncomingMessage) => boolean;
  private readonly level: (req: IncomingMessage, res: ServerResponse, error?: Error) => Level;

  constructor(@Inject(PARAMS_PROVIDER_TOKEN) params: Params) {
    const [options, stream] = params.pinoHttp as [Options, DestinationStream];
    this.logger = pino({ level: options.level, redact: options.redact }, stream);
    this.requestId = options.genReqId as AccessLogMiddleware['requestId'];
    this.serializeRequest = options.serializers?.req as Serializer;
    this.serializeResponse = options.serializers?.res as Serializer;
    const autoLogging = options.autoLogging as { ignore: AccessLogMiddleware['quiet'] };
    this.quiet = autoLogging.ignore;
    this.level = options.customLogLevel as AccessLogMiddleware['level'];
  }

  use(req: LoggedRequest, res: LoggedResponse, next: () => void): void {
    const id = req.id || this.requestId(req, res);
    req.id = id;
    const started = Date.now();
    const finished = (error?: Error) => {
      res.off('close', finished);
      res.off('finish', finished);
      res.off('error', finished);
      this.write(request, res, Date.now() - started, req, error);
    };
    // The request as pino's serializers see it, taken as it arrives; Express's req.ip is the client
    // behind a trusted proxy.
    const request = this.serializeRequest({
      id,
      method: req.method,
      url: req.originalUrl || req.url,
      remoteAddress: req.ip ?? req.socket?.remoteAddress,
    } as never);
    if (!this.quiet(req)) {
      res.on('close', finished);
      res.on('finish', finished);
    }
    res.on('error', finished);
    next();
  }

  private write(
    request: unknown,
    res: LoggedResponse,
    responseTime: number,
    req: IncomingMessage,
    error?: Error,
  ): void {
    const level = this.level(req, res, error);
    if (level === 'silent') return;
    const response = this.serializeResponse({
      statusCode: res.headersSent ? res.statusCode : null,
      raw: res,
    } as never);
    const failure = error ?? res.err;
    if (failure || res.statusCode >= 500) {
      const err = failure ?? new Error(`failed with status code ${res.statusCode}`);
      this.logger[level]({ req: request, res: response, err, responseTime }, 'request errored');
      return;
    }
    const message = !req.readableAborted && res.writableEnded ? 'request completed' : 'request aborted';
    this.logger[level]({ req: request, res: response, responseTime }, message);
  }
}
