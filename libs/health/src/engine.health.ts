import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { AppConfig } from '@app/config';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';

/**
 * Engine readiness from the model's state and `engine.health()`: synchronous, so a probe never waits
 * behind running forward batches.
 */
@Injectable()
export class EngineHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly model: ModelLifecycle,
    private readonly config: AppConfig,
  ) {}

  /**
   * A failure reason only with HEALTH_DETAILS=full: the route is public and a load error names files.
   * A download's progress (model id and bytes) is shown either way: it names no path and tells a
   * probe's reader why the pod is not ready yet.
   */
  isReady(key: string): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const { ready, state, reason } = this.model.readiness();
    const shown =
      reason && (this.config.server.healthDetails === 'full' || state === 'downloading') ? { reason } : {};
    return ready ? indicator.up({ state }) : indicator.down({ state, ...shown });
  }
}
