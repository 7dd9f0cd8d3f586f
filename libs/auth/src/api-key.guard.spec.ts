import { Controller, Get } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { AuthenticationError } from '@app/common';
import { AppConfig, loadAppConfig } from '@app/config';
import { ApiKeyGuard } from './api-key.guard';
import { Public } from './public.decorator';

@Controller()
class ProbeController {
  @Public()
  @Get('open')
  open(): void {}

  @Get('closed')
  closed(): void {}
}

function contextFor(
  handler: keyof ProbeController,
  headers: Record<string, string> = {},
): ExecutionContextHost {
  const context = new ExecutionContextHost([{ headers, body: {}, query: {} }, {}]);
  context.setType('http');
  jest.spyOn(context, 'getHandler').mockReturnValue(ProbeController.prototype[handler]);
  jest.spyOn(context, 'getClass').mockReturnValue(ProbeController);
  return context;
}

describe(ApiKeyGuard.name, () => {
  const enabled = loadAppConfig({ API_KEY: 'k' });

  it('lets @Public() routes through without a key', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled);
    expect(sut.canActivate(contextFor('open'))).toBe(true);
  });

  it('lets everything through when AUTH_DISABLED=true', () => {
    const sut = new ApiKeyGuard(new Reflector(), loadAppConfig({ AUTH_DISABLED: 'true' }) as AppConfig);
    expect(sut.canActivate(contextFor('closed'))).toBe(true);
  });

  it('turns a failed check into an AuthenticationError saying what was wrong', () => {
    const sut = new ApiKeyGuard(new Reflector(), enabled);
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
});
