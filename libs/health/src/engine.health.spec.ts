import { HealthIndicatorService } from '@nestjs/terminus';
import { ModelService, Readiness } from '@app/embeddings/model.service';
import { EngineHealthIndicator } from './engine.health';

describe(EngineHealthIndicator.name, () => {
  function create(readiness: Readiness): EngineHealthIndicator {
    const model = { readiness: () => readiness } as unknown as ModelService;
    return new EngineHealthIndicator(new HealthIndicatorService(), model);
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

  it('says why the engine failed', () => {
    expect(create({ ready: false, state: 'failed', reason: 'GPU 0 lost' }).isReady('engine')).toEqual({
      engine: { status: 'down', state: 'failed', reason: 'GPU 0 lost' },
    });
  });
});
