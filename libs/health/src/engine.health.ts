import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { ModelService } from '@app/embeddings/model.service';

/**
 * Engine readiness from the model's state and `engine.health()`: synchronous, so a probe never waits
 * behind running forward batches.
 */
@Injectable()
export class EngineHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly model: ModelService,
  ) {}

  isReady(key: string): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const { ready, state, reason } = this.model.readiness();
    return ready ? indicator.up({ state }) : indicator.down({ state, ...(reason ? { reason } : {}) });
  }
}
