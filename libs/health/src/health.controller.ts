import { Controller, Get, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from '@app/auth/public.decorator';
import { AppConfig } from '@app/config';
import { ModelRegistry, type ServedModel } from '@app/embeddings/model-registry';
import type { EngineInfo } from '@app/engine/engine.port';
import { EngineHealthIndicator } from './engine.health';

/** The engine facts about the model and layout, without its path and per-device host data. */
function publicEngineInfo(info: EngineInfo): Omit<EngineInfo, 'modelPath' | 'devices'> {
  const { modelPath, devices, ...rest } = info;
  void modelPath;
  void devices;
  return rest;
}

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly engine: EngineHealthIndicator,
    private readonly registry: ModelRegistry,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({
    summary:
      'Status, model, device, engine details and queue (503 unless ready); paths, devices and failure reasons only with HEALTH_DETAILS=full',
  })
  overview(@Res({ passthrough: true }) res: Response) {
    const models = this.registry.models.map((served) => this.describe(served));
    const ready = models.every((model) => model.status === 'ok');
    res.status(ready ? 200 : 503);
    // The first model's fields at the top level (one model: all there is), then every model by id.
    const [first] = models;
    return {
      ...first,
      status: ready ? 'ok' : first.status === 'ok' ? 'degraded' : first.status,
      models: Object.fromEntries(models.map(({ model, ...rest }) => [model, rest])),
    };
  }

  /** One served model's status, task, device and queue (its path and host data only when full). */
  private describe({ lifecycle, config, batching, id }: ServedModel) {
    const { ready, state, reason } = lifecycle.readiness();
    const info = (() => {
      try {
        return lifecycle.info;
      } catch {
        return undefined; // still loading
      }
    })();
    const full = this.config.server.healthDetails === 'full';
    // The route is public: by default no filesystem path, no host data (device names, memory) and
    // no failure message (a load error names files); the log has them all.
    const details = info && !full ? publicEngineInfo(info) : info;
    return {
      status: ready ? 'ok' : state,
      state,
      ...(reason && full ? { reason } : {}),
      model: id,
      // What the model serves, once setup has read the checkpoint: its head says it.
      task: lifecycle.head === undefined ? null : lifecycle.head === 'embedding' ? 'embed' : 'rerank',
      device: config.model.device,
      replicas: info?.replicas ?? null,
      queue: batching.stats(),
      details: details ?? null,
    };
  }

  @Get('live')
  @HealthCheck()
  @ApiOperation({ summary: 'Liveness: the process answers' })
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: model loaded and warmed up, engine healthy' })
  @ApiResponse({ status: 503, description: 'Loading, warming up, engine failed or shutting down' })
  async ready(@Res({ passthrough: true }) res: Response): Promise<unknown> {
    try {
      // One model: the `engine` indicator as ever; several: one indicator per served id.
      const several = this.registry.models.length > 1;
      return await this.health.check(
        this.registry
          .readiness()
          .map((model) => () => this.engine.isReady(several ? model.id : 'engine', model)),
      );
    } catch (error) {
      // Terminus reports "down" as a 503 exception; answer with its body, not the error envelope.
      if (error instanceof ServiceUnavailableException) {
        res.status(503);
        return error.getResponse();
      }
      throw error;
    }
  }
}
