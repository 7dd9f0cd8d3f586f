import { Test } from '@nestjs/testing';

import { EngineModule } from './engine.module';
import { EnginePort } from './engine.port';
import { NativeEngine } from './native-engine';

describe(EngineModule.name, () => {
  it('provides EnginePort as the NativeEngine for the configured addon', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EngineModule.forRoot({ addonPath: '/opt/qwen3_embed.node' })],
    }).compile();
    const sut = moduleRef.get(EnginePort);
    expect(sut).toBeInstanceOf(NativeEngine);
    expect((sut as NativeEngine).addonPath).toBe('/opt/qwen3_embed.node');
    expect(moduleRef.get(NativeEngine)).toBe(sut);

    await moduleRef.close();
    // Disposal is ModelLifecycle's (its teardown), not the module's.
    expect(sut.health()).toEqual({ ok: false, reason: 'no model loaded' });
  });

  it('takes the addon path from an async factory', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EngineModule.forRootAsync({ useFactory: async () => ({ addonPath: '/srv/addon.node' }) })],
    }).compile();
    expect(moduleRef.get(NativeEngine).addonPath).toBe('/srv/addon.node');
    await moduleRef.close();
  });
});
