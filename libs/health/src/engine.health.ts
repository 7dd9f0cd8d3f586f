import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { AppConfig } from '@app/config';
import type { ModelReadiness } from '@app/embeddings/model-registry';

/**
 * Engine readiness from a model's state and `engine.health()`: synchronous, so a probe never waits
 * behind running forward batches.
 */
@Injectable()
export class EngineHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly config: AppConfig,
  ) {}

  /**
   * A failure reason only with HEALTH_DETAILS=full: the route is public and a load error names files.
   * A download's progress (model id and bytes) is shown either way: it names no path and tells a
   * probe's reader why the pod is not ready yet.
   */
  isReady(key: string, { ready, state, reason }: ModelReadiness): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const shown =
      reason && (this.config.server.healthDetails === 'full' || state === 'downloading') ? { reason } : {};
    return ready ? indicator.up({ state }) : indicator.down({ state, ...shown });
  }
}
