import {
  ArgumentMetadata,
  Type,
  ValidationError,
  ValidationPipe,
  ValidationPipeOptions,
} from '@nestjs/common';
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
 * A quick check for the common, well-formed body of one DTO: it returns the instance the validation
 * pipe would return for that body (known fields only, every rule met), or undefined for anything
 * else, which then goes through class-transformer and class-validator as usual. It must never accept
 * a body the DTO's decorators would reject.
 */
export interface ValidationShortcut<T extends object = object> {
  type: Type<T>;
  accept(value: unknown): T | undefined;
}

const OPTIONS: ValidationPipeOptions = {
  transform: true,
  whitelist: true,
  forbidNonWhitelisted: false,
  stopAtFirstError: true,
  exceptionFactory: (errors) => {
    const first = firstError(errors) ?? { param: null, message: 'Invalid request' };
    return new InvalidRequestError(first.message, first.param);
  },
};

/** The validation pipe, taking a DTO's shortcut first when its body fits it. */
class ShortcutValidationPipe extends ValidationPipe {
  constructor(private readonly shortcuts: ReadonlyMap<Type, ValidationShortcut['accept']>) {
    super(OPTIONS);
  }

  // class-validator costs ~50 µs for the embeddings body, a tenth of the server's own time for a
  // short query (bench/server-overhead.ts); the shortcut takes ~1 µs.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override transform(value: any, metadata: ArgumentMetadata): Promise<any> {
    const accept =
      metadata.type === 'body' && metadata.metatype ? this.shortcuts.get(metadata.metatype) : undefined;
    const accepted = accept?.(value);
    return accepted !== undefined ? Promise.resolve(accepted) : super.transform(value, metadata);
  }
}

/**
 * The global validation pipe: DTO errors become a 400 naming the first offending field in `param`.
 * Unknown fields are dropped rather than rejected, so clients that send extra fields keep working.
 * `shortcuts` let the hot DTOs skip class-validator for bodies that are plainly valid.
 */
export function createValidationPipe(shortcuts: readonly ValidationShortcut[] = []): ValidationPipe {
  return new ShortcutValidationPipe(new Map(shortcuts.map((shortcut) => [shortcut.type, shortcut.accept])));
}
