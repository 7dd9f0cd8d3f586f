import { Controller, Get, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from '@app/auth/public.decorator';
import { BatchingService } from '@app/batching/batching.service';
import { AppConfig } from '@app/config';
import type { EngineInfo } from '@app/engine/engine.port';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';
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
    private readonly model: ModelLifecycle,
    private readonly batching: BatchingService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({
    summary:
      'Status, model, device, engine details and queue (503 unless ready); paths, devices and failure reasons only with HEALTH_DETAILS=full',
  })
  overview(@Res({ passthrough: true }) res: Response) {
    const { ready, state, reason } = this.model.readiness();
    const info = (() => {
      try {
        return this.model.info;
      } catch {
        return undefined; // still loading
      }
    })();
    const full = this.config.server.healthDetails === 'full';
    // The route is public: by default no filesystem path, no host data (device names, memory) and
    // no failure message (a load error names files); the log has them all.
    const details = info && !full ? publicEngineInfo(info) : info;
    res.status(ready ? 200 : 503);
    return {
      status: ready ? 'ok' : state,
      ...(reason && full ? { reason } : {}),
      model: this.config.model.servedNames[0],
      // What the model serves, once setup has read the checkpoint: its head says it.
      task: this.model.head === undefined ? null : this.model.head === 'embedding' ? 'embed' : 'rerank',
      device: this.config.model.device,
      replicas: info?.replicas ?? null,
      queue: this.batching.stats(),
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
      return await this.health.check([() => this.engine.isReady('engine')]);
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
