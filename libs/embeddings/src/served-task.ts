import type { EngineInfo } from '@app/engine/engine.port';
import type { ModelService } from './model.service';

/** What the served model does (issue 17): embed texts, or score query-document pairs. */
export type ServedTask = 'embed' | 'rerank';

/** A reranker's score head, as EngineInfo reports it (libs/engine: EngineHead). */
export type ServedHead = 'embedding' | 'yes-no' | 'classifier';

/**
 * The served model's task, for POST /tokenize and GET /info. ModelService gains `task` with the
 * reranker (libs/rerank); until it has one, every model embeds. The one place that reads it here.
 */
export function servedTask(model: ModelService): ServedTask {
  return (model as { readonly task?: ServedTask }).task ?? 'embed';
}

/** The engine's head (EngineInfo.head, with the score heads); an engine that names none embeds. */
export function servedHead(info: EngineInfo): ServedHead {
  return (info as { readonly head?: ServedHead }).head ?? 'embedding';
}
