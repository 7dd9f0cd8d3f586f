import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AuthenticationError } from '@app/common';
import { AppConfig } from '@app/config';
import { ApiKeyPrincipal, BearerStrategy } from './bearer.strategy';
import { IS_PUBLIC_KEY } from './public.decorator';

export const MISSING_KEY =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
export const WRONG_KEY = 'Incorrect API key provided.';

/**
 * The global guard: every route needs a key unless marked @Public() or AUTH_DISABLED=true. The
 * principal is left on `request.user`, where passport would put it.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: AppConfig,
    private readonly bearer: BearerStrategy,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic || this.config.auth.disabled) {
      return true;
    }
    const request = context.switchToHttp().getRequest<Request & { user?: ApiKeyPrincipal }>();
    request.user = this.handleRequest(null, this.bearer.authenticate(request), undefined, context);
    return true;
  }

  handleRequest<TUser>(
    error: unknown,
    user: TUser | false,
    _info: unknown,
    context: ExecutionContext,
  ): TUser {
    if (error) {
      throw error;
    }
    if (!user) {
      const header = context.switchToHttp().getRequest<Request>().headers.authorization;
      throw new AuthenticationError(header ? WRONG_KEY : MISSING_KEY);
    }
    return user;
  }
}
