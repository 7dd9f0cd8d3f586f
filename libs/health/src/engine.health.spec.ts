import { HealthIndicatorService } from '@nestjs/terminus';
import { AppConfig, HealthDetails } from '@app/config';
import type { Readiness } from '@app/engine/model-lifecycle.service';
import { EngineHealthIndicator } from './engine.health';

describe(EngineHealthIndicator.name, () => {
  function create(readiness: Readiness, healthDetails: HealthDetails = 'full') {
    const config = { server: { healthDetails } } as AppConfig;
    const sut = new EngineHealthIndicator(new HealthIndicatorService(), config);
    return { isReady: (key: string) => sut.isReady(key, { id: 'm', ...readiness }) };
  }

  it('is up when the model is ready', () => {
    expect(create({ ready: true, state: 'ready' }).isReady('engine')).toEqual({
      engine: { status: 'up', state: 'ready' },
    });
  });

  it.each<Readiness>([
    { ready: false, state: 'loading' },
    { ready: false, state: 'warming' },
    { ready: false, state: 'stopping' },
    { ready: false, state: 'failed', reason: 'GPU 0 lost' },
  ])('is down while $state', (readiness) => {
    const sut = create(readiness);
    expect(sut.isReady('engine').engine).toMatchObject({ status: 'down', state: readiness.state });
  });

  it('keeps the failure reason to itself unless HEALTH_DETAILS=full', () => {
    expect(
      create({ ready: false, state: 'failed', reason: 'cannot read /models/x' }, 'basic').isReady('engine'),
    ).toEqual({ engine: { status: 'down', state: 'failed' } });
  });

  it('says why the engine failed with HEALTH_DETAILS=full', () => {
    expect(create({ ready: false, state: 'failed', reason: 'GPU 0 lost' }).isReady('engine')).toEqual({
      engine: { status: 'down', state: 'failed', reason: 'GPU 0 lost' },
    });
  });
});
