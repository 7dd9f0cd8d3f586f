import { Controller, Get, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from '@app/auth/public.decorator';
import { BatchingService } from '@app/batching/batching.service';
import { AppConfig } from '@app/config';
import { ModelService } from '@app/embeddings/model.service';
import { EngineHealthIndicator } from './engine.health';

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly engine: EngineHealthIndicator,
    private readonly model: ModelService,
    private readonly batching: BatchingService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Status, model, device, engine details and queue (503 unless ready)' })
  overview(@Res({ passthrough: true }) res: Response) {
    const { ready, state, reason } = this.model.readiness();
    const details = (() => {
      try {
        return this.model.info;
      } catch {
        return undefined; // still loading
      }
    })();
    res.status(ready ? 200 : 503);
    return {
      status: ready ? 'ok' : state,
      ...(reason ? { reason } : {}),
      model: this.model.id,
      device: this.config.model.device,
      replicas: details?.replicas ?? null,
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
