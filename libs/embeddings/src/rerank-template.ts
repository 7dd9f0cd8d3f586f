/** A query-document pair in a reranker's prompt: the ids the engine scores. */
export interface RerankTemplateIds {
  tokenIds: number[];
  /** The middle (instruction, query, document) was cut to fit the model's length. */
  truncated: boolean;
}

/**
 * How a reranker's template turns a pair into token ids, exactly as POST /v1/rerank builds them, so
 * POST /tokenize answers with what the engine sees. libs/rerank provides it (its
 * RerankPromptBuilder); without a provider a reranker's pair cannot be tokenized here.
 */
export abstract class RerankTemplate {
  /** `instruction` absent: the template's default Instruct. */
  abstract build(query: string, document: string, instruction?: string): Promise<RerankTemplateIds>;
}

/**
 * Each served reranker's template (libs/rerank's per-model RerankService); the registry looks it up
 * app-wide for POST /tokenize. `served` is a ModelRegistry entry.
 */
export abstract class RerankTemplates {
  abstract for(served: object): RerankTemplate;
}
