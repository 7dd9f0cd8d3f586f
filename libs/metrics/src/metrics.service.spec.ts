import { EventEmitter } from 'node:events';
import type { NextFunction, Request, Response } from 'express';
import { buildInfo } from '@app/common/build-info';
import { loadAppConfig } from '@app/config';
import { EnginePort } from '@app/engine/engine.port';
import { FakeEngine } from '@app/engine/testing';
import { HttpMetricsMiddleware } from './http-metrics.middleware';
import { MetricsService } from './metrics.service';

describe(MetricsService.name, () => {
  const devicesOf = (engine: EnginePort) => () => {
    try {
      return engine.info().devices ?? [];
    } catch {
      return [];
    }
  };

  it("reports device memory per model and device from each engine's info()", async () => {
    const engine = new FakeEngine({
      info: {
        devices: [
          { index: 0, name: 'H100', totalMemoryBytes: 80, usedMemoryBytes: 9, replica: 0, rank: 0 },
          { index: 1, name: 'H100', totalMemoryBytes: 80, usedMemoryBytes: 8, replica: 0, rank: 1 },
        ],
      },
    });
    const sut = new MetricsService();
    sut.reportModels(() => [{ model: 'm', ready: () => true, devices: devicesOf(engine) }]);
    const text = await sut.render();
    expect(text).toContain(
      'qwen3_embed_device_memory_used_bytes{model="m",device="0",name="H100",replica="0",rank="0"} 9',
    );
    expect(text).toContain(
      'qwen3_embed_device_memory_used_bytes{model="m",device="1",name="H100",replica="0",rank="1"} 8',
    );
    expect(text).toContain(
      'qwen3_embed_device_memory_total_bytes{model="m",device="1",name="H100",replica="0",rank="1"} 80',
    );
  });

  it('reports no devices before the engine is loaded', async () => {
    const engine = {
      info: () => {
        throw new Error('not loaded');
      },
    } as unknown as EnginePort;
    const sut = new MetricsService();
    sut.reportModels(() => [{ model: 'm', ready: () => false, devices: devicesOf(engine) }]);
    expect(await sut.render()).not.toMatch(/^qwen3_embed_device_memory_used_bytes\{/m);
  });

  it("labels each model's series with its id, and reports build info and readiness per model", async () => {
    const config = loadAppConfig({
      AUTH_DISABLED: 'true',
      DEVICE: 'cpu',
      MODEL_PATH: '/models/Qwen3-Embedding-tiny',
    });
    const sut = new MetricsService(config);
    sut.forModel('Qwen3-Embedding-tiny').tokens.inc(3);
    sut.forModel('reranker').rejected.inc({ reason: 'queue_full' });
    let ready = false;
    sut.reportModels(() => [
      { model: 'Qwen3-Embedding-tiny', ready: () => ready, devices: () => [] },
      { model: 'reranker', ready: () => true, devices: () => [] },
    ]);
    expect(await sut.render()).toContain('qwen3_embed_ready{model="Qwen3-Embedding-tiny"} 0');
    ready = true;
    const text = await sut.render();
    expect(text).toContain('qwen3_embed_ready{model="Qwen3-Embedding-tiny"} 1');
    expect(text).toContain('qwen3_embed_ready{model="reranker"} 1');
    expect(text).toContain('qwen3_embed_tokens_total{model="Qwen3-Embedding-tiny"} 3');
    expect(text).toContain('qwen3_embed_requests_rejected_total{model="reranker",reason="queue_full"} 1');
    const { version, commit } = buildInfo();
    // Process-wide series name no model.
    expect(text).toContain(`qwen3_embed_build_info{version="${version}",commit="${commit}",device="cpu"} 1`);
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    // Every metric of the service's own carries the prefix.
    const own = [...text.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]);
    expect(own.filter((name) => !/^(qwen3_embed_|process_|nodejs_)/.test(name))).toEqual([]);
  });

  it('keeps a registry per instance, so two apps in one process do not collide', async () => {
    const first = new MetricsService();
    const second = new MetricsService();
    first.forModel('m').tokens.inc(5);
    expect(await first.render()).toContain('qwen3_embed_tokens_total{model="m"} 5');
    expect(await second.render()).not.toContain('qwen3_embed_tokens_total{model="m"}');
  });
});

describe(HttpMetricsMiddleware.name, () => {
  it('labels requests by route template, not by raw URL', async () => {
    const metrics = new MetricsService();
    const sut = new HttpMetricsMiddleware(metrics);
    for (const [route, status] of [
      [{ path: '/models/*id' }, 200],
      [undefined, 404],
    ] as const) {
      const res = Object.assign(new EventEmitter(), { statusCode: status }) as unknown as Response;
      const req = { method: 'GET', baseUrl: '/v1', route } as unknown as Request;
      sut.use(req, res, (() => undefined) as NextFunction);
      (res as unknown as EventEmitter).emit('finish');
    }
    const text = await metrics.render();
    expect(text).toContain(
      'qwen3_embed_http_requests_total{method="GET",route="/v1/models/*id",status="200"} 1',
    );
    expect(text).toContain('qwen3_embed_http_requests_total{method="GET",route="unmatched",status="404"} 1');
  });
});
