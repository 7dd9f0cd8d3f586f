import { Injectable } from '@nestjs/common';
import type { ServedModel } from '@app/embeddings/model-registry';
import { RerankTemplate, RerankTemplates } from '@app/embeddings/rerank-template';
import { RerankService } from './rerank.service';

/** Each served model's RerankService, made on its first rerank (or tokenized pair) and kept. */
@Injectable()
export class RerankServices extends RerankTemplates {
  private readonly services = new WeakMap<ServedModel, RerankService>();

  for(served: ServedModel): RerankService {
    let service = this.services.get(served);
    if (!service) {
      service = new RerankService(
        served.config,
        served.model,
        served.tokenizer,
        served.batching,
        served.metrics,
      );
      this.services.set(served, service);
    }
    return service;
  }
}

export type { RerankTemplate };
