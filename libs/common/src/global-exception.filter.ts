import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { RequestAbortedError } from './domain.error';
import type { ResponseLocals } from './logging.config';
import { toOpenAIError } from './openai-error';

/** The one exception filter: every error leaves the service as an OpenAI error envelope. */
@Catch()
export class GlobalExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger(GlobalExceptionFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const response = http.getResponse<Response>();
    if (exception instanceof RequestAbortedError || response.headersSent || response.destroyed) {
      // Nobody is listening any more, or the answer is already on the wire.
      if (!response.writableEnded && !response.destroyed) {
        response.end();
      }
      return;
    }
    const mapped = toOpenAIError(exception);
    if (mapped.internal) {
      // The line carries the request (nestjs-pino's AsyncLocalStorage): its id, method and path.
      this.logger.error({ err: exception }, 'unhandled error while serving a request');
    }
    // For the request line (pino-http's response serializer, createLoggerParams).
    (response.locals as ResponseLocals).errorCode = mapped.body.error.code ?? mapped.body.error.type;
    response.status(mapped.status).set(mapped.headers).json(mapped.body);
  }
}
