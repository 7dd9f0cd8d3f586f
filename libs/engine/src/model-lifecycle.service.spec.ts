import { Logger } from '@nestjs/common';
import { loadAppConfig } from '@app/config';
import { packBatch } from './packed-batch';
import { ModelLifecycle } from './model-lifecycle.service';
import { FakeEngine } from './testing';

function create(env: Record<string, string> = {}) {
  const config = loadAppConfig({
    API_KEY: 'k',
    MODEL_PATH: '/models/Qwen3-Embedding-tiny',
    DEVICE: 'cpu',
    ...env,
  });
  const engine = new FakeEngine({ info: { hiddenSize: 64 } });
  return { engine, sut: new ModelLifecycle(config, engine) };
}

describe(ModelLifecycle.name, () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('sets up without any layer above: prepare, load, warm up with the batch it is given, ready', async () => {
    const { engine, sut } = create();
    const order: string[] = [];
    await sut.setup({
      prepare: async (directory) => {
        order.push(`prepare ${directory}`);
        expect(engine.loadOptions).toBeUndefined();
      },
      warmUpBatch: async (info) => {
        order.push(`warm-up ${info.hiddenSize}`);
        return packBatch([{ tokens: Int32Array.of(1, 2), dimensions: info.hiddenSize }]);
      },
    });
    expect(order).toEqual(['prepare /models/Qwen3-Embedding-tiny', 'warm-up 64']);
    expect(engine.batches).toHaveLength(1);
    expect(sut.readiness()).toEqual({ ready: true, state: 'ready', reason: undefined });
    expect(sut.directoryName).toBe('Qwen3-Embedding-tiny');
  });

  it('does not load the engine when preparing fails, and reports why', async () => {
    const { engine, sut } = create();
    await expect(
      sut.setup({ prepare: () => Promise.reject(new Error('no tokenizer.json')) }),
    ).rejects.toThrow('no tokenizer.json');
    expect(engine.loadOptions).toBeUndefined();
    expect(sut.readiness()).toEqual({ ready: false, state: 'failed', reason: 'no tokenizer.json' });
  });

  it('is the one owner of disposal: teardown disposes the engine once, loaded or not', async () => {
    const { engine, sut } = create();
    const dispose = jest.spyOn(engine, 'dispose');
    await sut.setup();
    await Promise.all([sut.teardown(), sut.teardown()]);
    expect(dispose).toHaveBeenCalledTimes(1);
    expect(sut.readiness()).toMatchObject({ ready: false, state: 'stopping' });
    expect(() => sut.assertReady()).toThrow(expect.objectContaining({ reason: 'shutting_down' }));

    const never = create();
    const disposeNever = jest.spyOn(never.engine, 'dispose');
    await never.sut.teardown();
    expect(disposeNever).toHaveBeenCalledTimes(1);
  });
});
