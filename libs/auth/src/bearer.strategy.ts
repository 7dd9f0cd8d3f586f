import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { Strategy } from 'passport-http-bearer';
import { ApiKeyService } from './api-key.service';

export interface ApiKeyPrincipal {
  kind: 'api-key';
}

/** The actions passport gives a strategy for one request; exactly one of them is called. */
interface StrategyActions {
  success(user: ApiKeyPrincipal): void;
  fail(): void;
  error(error: unknown): void;
}

type Outcome = { user: ApiKeyPrincipal | false } | { error: unknown };

/**
 * `Authorization: Bearer <key>` (as the OpenAI SDKs send it), or `access_token` in the body or query
 * string: passport-http-bearer's strategy reads the key (RFC 6750; a key in two places is refused) and
 * ApiKeyService checks it. The strategy runs as passport runs one, on a copy given the success, fail
 * and error actions, but here and synchronously: with one strategy, no session and a synchronous
 * check, passport's middleware and @nestjs/passport's promises around it only cost time on every
 * request (bench/server-overhead.ts measures the server's own time).
 */
@Injectable()
export class BearerStrategy {
  private readonly strategy = new Strategy((token, done) => done(null, this.validate(token)));

  constructor(private readonly keys: ApiKeyService) {}

  /**
   * A key that is not one string (`access_token` sent as a number, an object, or twice in the query
   * string, which Express parses into an array) is a wrong key, not a server error.
   */
  validate(token: unknown): ApiKeyPrincipal | false {
    return typeof token === 'string' && this.keys.verify(token) ? { kind: 'api-key' } : false;
  }

  /** The principal of the request's key; false when it has none or a wrong one. */
  authenticate(request: Request): ApiKeyPrincipal | false {
    let outcome: Outcome | undefined;
    const actions: StrategyActions = {
      success: (user) => (outcome = { user }),
      fail: () => (outcome = { user: false }),
      error: (error) => (outcome = { error }),
    };
    const attempt = Object.assign(Object.create(this.strategy) as typeof this.strategy, actions);
    attempt.authenticate(request);
    if (outcome === undefined) {
      throw new Error('the bearer strategy decided nothing');
    }
    if ('error' in outcome) {
      throw outcome.error;
    }
    return outcome.user;
  }
}
