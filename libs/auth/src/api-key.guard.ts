import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { AuthenticationError } from '@app/common';
import { AppConfig } from '@app/config';
import { IS_PUBLIC_KEY } from './public.decorator';

const MISSING_KEY =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
const WRONG_KEY = 'Incorrect API key provided.';

/** The global guard: every route needs a key unless marked @Public() or AUTH_DISABLED=true. */
@Injectable()
export class ApiKeyGuard extends AuthGuard('bearer') {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: AppConfig,
  ) {
    super();
  }

  override canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic || this.config.auth.disabled) {
      return true;
    }
    return super.canActivate(context) as Promise<boolean>;
  }

  override handleRequest<TUser>(
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
