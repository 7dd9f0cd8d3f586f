import { ValidationError, ValidationPipe } from '@nestjs/common';
import { InvalidRequestError } from './domain.error';

function firstError(errors: ValidationError[], path = ''): { param: string; message: string } | undefined {
  for (const error of errors) {
    const param = path ? `${path}.${error.property}` : error.property;
    const message = Object.values(error.constraints ?? {})[0];
    if (message) {
      return { param, message };
    }
    const nested = firstError(error.children ?? [], param);
    if (nested) {
      return nested;
    }
  }
  return undefined;
}

/**
 * The global validation pipe: DTO errors become a 400 naming the first offending field in `param`.
 * Unknown fields are dropped rather than rejected, so clients that send extra fields keep working.
 */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    transform: true,
    whitelist: true,
    forbidNonWhitelisted: false,
    stopAtFirstError: true,
    exceptionFactory: (errors) => {
      const first = firstError(errors) ?? { param: null, message: 'Invalid request' };
      return new InvalidRequestError(first.message, first.param);
    },
  });
}
