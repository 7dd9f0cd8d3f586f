import { Controller, Get } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { AuthenticationError } from '@app/common';
import { AppConfig, loadAppConfig } from '@app/config';
import { ApiKeyGuard } from './api-key.guard';
import { ApiKeyService } from './api-key.service';
import { BearerStrategy } from './bearer.strategy';
import { Public } from './public.decorator';

@Controller()
class ProbeController {
  @Public()
  @Get('open')
  open(): void {}

  @Get('closed')
  closed(): void {}
}

interface ProbeRequest {
  headers: Record<string, string>;
  body: Record<string, unknown>;
  query: Record<string, unknown>;
  user?: unknown;
}

function contextFor(
  handler: keyof ProbeController,
  headers: Record<string, string> = {},
  request: ProbeRequest = { headers, body: {}, query: {} },
): ExecutionContextHost {
  const context = new ExecutionContextHost([request, {}]);
  context.setType('http');
  jest.spyOn(context, 'getHandler').mockReturnValue(ProbeController.prototype[handler]);
  jest.spyOn(context, 'getClass').mockReturnValue(ProbeController);
  return context;
}

describe(ApiKeyGuard.name, () => {
  const enabled = loadAppConfig({ API_KEY: 'k' });
  const bearer = new BearerStrategy(new ApiKeyService(enabled));

  it('lets @Public() routes through without a key', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, bearer);
    expect(sut.canActivate(contextFor('open'))).toBe(true);
  });

  it('lets everything through when AUTH_DISABLED=true', () => {
    const sut = new ApiKeyGuard(
      new Reflector(),
      loadAppConfig({ AUTH_DISABLED: 'true' }) as AppConfig,
      bearer,
    );
    expect(sut.canActivate(contextFor('closed'))).toBe(true);
  });

  it('turns a failed check into an AuthenticationError saying what was wrong', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, bearer);
    expect(() => sut.handleRequest(null, false, undefined, contextFor('closed'))).toThrow(
      AuthenticationError,
    );
    expect(() => sut.handleRequest(null, false, undefined, contextFor('closed'))).toThrow(
      "You didn't provide an API key",
    );
    expect(() =>
      sut.handleRequest(null, false, undefined, contextFor('closed', { authorization: 'Bearer nope' })),
    ).toThrow('Incorrect API key provided.');
    expect(sut.handleRequest(null, { kind: 'api-key' }, undefined, contextFor('closed'))).toEqual({
      kind: 'api-key',
    });
  });

  it('takes the key from a Bearer header, or from access_token in the body or query, and keeps the principal', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, bearer);
    for (const request of [
      { headers: { authorization: 'Bearer k' }, body: {}, query: {} },
      { headers: { authorization: 'bearer k' }, body: {}, query: {} },
      { headers: {}, body: { access_token: 'k' }, query: {} },
      { headers: {}, body: {}, query: { access_token: 'k' } },
    ] as ProbeRequest[]) {
      expect(sut.canActivate(contextFor('closed', request.headers, request))).toBe(true);
      expect(request.user).toEqual({ kind: 'api-key' });
    }
  });

  it.each([
    ['no key', {}, {}, {}, "You didn't provide an API key"],
    ['another scheme', { authorization: 'Basic k' }, {}, {}, 'Incorrect API key provided.'],
    ['a wrong key', { authorization: 'Bearer nope' }, {}, {}, 'Incorrect API key provided.'],
    ['a malformed header', { authorization: 'Bearer k k' }, {}, {}, 'Incorrect API key provided.'],
    ['a key in two places', { authorization: 'Bearer k' }, { access_token: 'k' }, {}, 'Incorrect API key'],
    ['a wrong key in the query', {}, {}, { access_token: 'nope' }, "You didn't provide an API key"],
  ])('refuses %s with a 401 saying what was wrong', (_label, headers, body, query, message) => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, bearer);
    const request: ProbeRequest = { headers, body, query };
    expect(() => sut.canActivate(contextFor('closed', headers, request))).toThrow(AuthenticationError);
    expect(() => sut.canActivate(contextFor('closed', headers, request))).toThrow(message);
    expect(request.user).toBeUndefined();
  });
});
