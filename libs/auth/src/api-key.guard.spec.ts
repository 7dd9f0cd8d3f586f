import { Controller, Get } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { AuthenticationError } from '@app/common';
import { AppConfig, loadAppConfig } from '@app/config';
import { ApiKeyGuard } from './api-key.guard';
import { ApiKeyService } from './api-key.service';
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
  const keys = new ApiKeyService(enabled);

  it('lets @Public() routes through without a key', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, keys);
    expect(sut.canActivate(contextFor('open'))).toBe(true);
  });

  it('lets everything through when AUTH_DISABLED=true', () => {
    const sut = new ApiKeyGuard(new Reflector(), loadAppConfig({ AUTH_DISABLED: 'true' }) as AppConfig, keys);
    expect(sut.canActivate(contextFor('closed'))).toBe(true);
  });

  it('takes the key from a Bearer header (the scheme in any case), or from access_token in the body or query', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, keys);
    for (const request of [
      { headers: { authorization: 'Bearer k' }, body: {}, query: {} },
      { headers: { authorization: 'bearer k' }, body: {}, query: {} },
      { headers: {}, body: { access_token: 'k' }, query: {} },
      { headers: {}, body: {}, query: { access_token: 'k' } },
    ] as ProbeRequest[]) {
      expect(sut.canActivate(contextFor('closed', request.headers, request))).toBe(true);
    }
  });

  it.each([
    ['no key', {}, {}, {}, "You didn't provide an API key"],
    ['another scheme', { authorization: 'Basic k' }, {}, {}, 'Incorrect API key provided.'],
    ['a wrong key', { authorization: 'Bearer nope' }, {}, {}, 'Incorrect API key provided.'],
    ['a malformed header', { authorization: 'Bearer k k' }, {}, {}, 'Incorrect API key provided.'],
    ['a key in two places', { authorization: 'Bearer k' }, { access_token: 'k' }, {}, 'Incorrect API key'],
    ['a wrong key in the query', {}, {}, { access_token: 'nope' }, "You didn't provide an API key"],
    ['a key in the body and the query', {}, { access_token: 'k' }, { access_token: 'k' }, "You didn't"],
    ['a key that is a number', {}, { access_token: 7 }, {}, "You didn't provide an API key"],
    ['a key sent twice in the query', {}, {}, { access_token: ['k', 'k'] }, "You didn't provide"],
    ['an empty Bearer', { authorization: 'Bearer ' }, {}, {}, 'Incorrect API key provided.'],
  ])('refuses %s with a 401 saying what was wrong', (_label, headers, body, query, message) => {
    const sut = new ApiKeyGuard(new Reflector(), enabled, keys);
    const request: ProbeRequest = { headers, body, query };
    expect(() => sut.canActivate(contextFor('closed', headers, request))).toThrow(AuthenticationError);
    expect(() => sut.canActivate(contextFor('closed', headers, request))).toThrow(message);
  });
});
