import { Test } from '@nestjs/testing';

import { EngineModule } from './engine.module';
import { EnginePort } from './engine.port';
import { NativeEngine } from './native-engine';

describe(EngineModule.name, () => {
  it('provides EnginePort as the NativeEngine for the addon path its factory gives, disposed on close', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EngineModule.forRootAsync({ useFactory: async () => ({ addonPath: '/srv/addon.node' }) })],
    }).compile();
    const sut = moduleRef.get(EnginePort);
    expect(sut).toBeInstanceOf(NativeEngine);
    expect((sut as NativeEngine).addonPath).toBe('/srv/addon.node');
    expect(moduleRef.get(NativeEngine)).toBe(sut);

    await moduleRef.close();
    // Disposal is ModelLifecycle's (its teardown), not the module's.
    expect(sut.health()).toEqual({ ok: false, reason: 'no model loaded' });
  });
});
