import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthenticationError } from '@app/common';
import { AppConfig } from '@app/config';
import { ApiKeyService } from './api-key.service';
import { IS_PUBLIC_KEY } from './public.decorator';

const MISSING_KEY =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
const WRONG_KEY = 'Incorrect API key provided.';

/** The parts of a request a key may come in. */
export interface KeyedRequest {
  headers: { authorization?: string };
  body?: unknown;
  query?: unknown;
}

/** A request whose key is malformed or sent in more than one place. */
const REFUSED = Symbol('refused');

function accessToken(fields: unknown): unknown {
  return typeof fields === 'object' && fields !== null
    ? (fields as { access_token?: unknown }).access_token
    : undefined;
}

/**
 * The key a request presents, where RFC 6750 puts it: `Authorization: Bearer <key>` (as the OpenAI
 * SDKs send it; the scheme in any case), or `access_token` in the body or the query string.
 * Undefined when there is none; REFUSED for an Authorization header of more than two parts, or a key
 * in two places.
 */
export function presentedKey(request: KeyedRequest): unknown {
  let key: unknown;
  const header = request.headers.authorization;
  if (header) {
    const parts = header.split(' ');
    if (parts.length !== 2) return REFUSED;
    if (/^Bearer$/i.test(parts[0])) key = parts[1];
  }
  for (const token of [accessToken(request.body), accessToken(request.query)]) {
    if (!token) continue;
    if (key) return REFUSED;
    key = token;
  }
  return key;
}

/**
 * The global guard: every route needs a key unless marked @Public() or AUTH_DISABLED=true. A key that
 * is not one string (`access_token` sent as a number, an object, or twice in the query string, which
 * Express parses into an array) is a wrong key; ApiKeyService compares digests in constant time.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: AppConfig,
    private readonly keys: ApiKeyService,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic || this.config.auth.disabled) {
      return true;
    }
    const request = context.switchToHttp().getRequest<KeyedRequest>();
    const key = presentedKey(request);
    if (typeof key === 'string' && this.keys.verify(key)) {
      return true;
    }
    throw new AuthenticationError(request.headers.authorization ? WRONG_KEY : MISSING_KEY);
  }
}
