import { Test } from '@nestjs/testing';

import { EngineFactory } from './engine-factory';
import { EngineModule } from './engine.module';
import { NativeEngine } from './native-engine';

describe(EngineModule.name, () => {
  it('makes a NativeEngine per served model for the addon path its factory gives, none disposed on close', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EngineModule.forRootAsync({ useFactory: async () => ({ addonPath: '/srv/addon.node' }) })],
    }).compile();
    const factory = moduleRef.get(EngineFactory);
    const [first, second] = [factory.create(0), factory.create(1)];
    expect(first).toBeInstanceOf(NativeEngine);
    expect((first as NativeEngine).addonPath).toBe('/srv/addon.node');
    expect(second).not.toBe(first);
    expect((moduleRef.get(NativeEngine) as NativeEngine).addonPath).toBe('/srv/addon.node');

    await moduleRef.close();
    // Disposal is each model's ModelLifecycle's (its teardown), not the module's.
    expect(first.health()).toEqual({ ok: false, reason: 'no model loaded' });
  });
});
