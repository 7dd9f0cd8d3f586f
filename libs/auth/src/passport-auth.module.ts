import { CanActivate, DynamicModule, ExecutionContext, Injectable, Module, Type } from '@nestjs/common';
import { APP_GUARD, Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { Strategy } from 'passport-http-bearer';
import { AuthenticationError } from '@app/common';
import { AppConfig } from '@app/config';
import { MISSING_KEY, WRONG_KEY } from './api-key.guard';
import { ApiKeyService } from './api-key.service';
import { ApiKeyPrincipal } from './bearer.strategy';
import { IS_PUBLIC_KEY } from './public.decorator';

/** The part of @nestjs/passport this module uses (its own types, when it is installed). */
interface NestPassport {
  AuthGuard(type: string): Type<CanActivate>;
  PassportStrategy(strategy: typeof Strategy, name: string): Type<object>;
}

/**
 * @nestjs/passport (with passport), when installed. Both are declared dependencies, but a checkout
 * whose node_modules predates them still builds and serves: this is the only place that asks for
 * them, at run time, and only when the framework path of the bearer check is chosen
 * (bench/bypass-overhead.ts measures it against ApiKeyGuard's own).
 */
function nestPassport(): NestPassport | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@nestjs/passport') as NestPassport;
  } catch {
    return undefined;
  }
}

/**
 * The API key check the framework's way: passport-http-bearer registered with passport through
 * @nestjs/passport's PassportStrategy, run by its AuthGuard('bearer') (passport.authenticate with the
 * guard's promise around it). Same key sources, refusals and principal as ApiKeyGuard; same
 * @Public() and AUTH_DISABLED opt-outs. Undefined when @nestjs/passport is not installed.
 */
export function passportAuthModule(): DynamicModule | undefined {
  const passport = nestPassport();
  if (!passport) return undefined;

  @Injectable()
  class PassportBearerStrategy extends passport.PassportStrategy(Strategy, 'bearer') {
    constructor(private readonly keys: ApiKeyService) {
      super();
    }

    /** A key that is not one string (sent twice, as a number) is a wrong key, not a server error. */
    validate(token: unknown): ApiKeyPrincipal | false {
      return typeof token === 'string' && this.keys.verify(token) ? { kind: 'api-key' } : false;
    }
  }

  @Injectable()
  class PassportApiKeyGuard extends passport.AuthGuard('bearer') {
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

  return {
    module: PassportAuthModule,
    providers: [ApiKeyService, PassportBearerStrategy, { provide: APP_GUARD, useClass: PassportApiKeyGuard }],
    exports: [ApiKeyService],
  };
}

/** AuthModule with passport's middleware and @nestjs/passport's guard (`passportAuthModule`). */
@Module({})
export class PassportAuthModule {}
