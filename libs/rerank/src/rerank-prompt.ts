import { QWEN3_RERANKER_MAX_LENGTH } from '@app/checkpoint/model-task';
import { InvalidRequestError } from '@app/common';

/** The model card's default task, used when a request gives no instruction. */
export const RERANK_DEFAULT_INSTRUCTION =
  'Given a web search query, retrieve relevant passages that answer the query';

/** Tokens of one templated pair at most, as the model card sets max_length. */
export const RERANK_MAX_LENGTH = QWEN3_RERANKER_MAX_LENGTH;

/** The model card's system turn and the opening of the user's. */
export const RERANK_PREFIX =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n';

/** The end of the user's turn and an assistant turn with an empty think block: the next token is the answer. */
export const RERANK_SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';

/** The part of a pair between prefix and suffix (the model card's format_instruction). */
export function rerankMiddle(query: string, document: string, instruction: string): string {
  return `<Instruct>: ${instruction}\n<Query>: ${query}\n<Document>: ${document}`;
}

/** One query-document pair as the model reads it. */
export interface RerankPair {
  tokenIds: number[];
  /** The middle (the document's end) was cut to fit maxLength. */
  truncated: boolean;
}

/** A text's token ids with no special tokens added (no end-of-text appended). */
export type RerankEncode = (text: string) => Promise<number[]> | number[];

/**
 * Builds Qwen3-Reranker's input exactly as the model card's code does, so the token ids equal
 * transformers': encode(prefix) + encode(middle) cut to the room left + encode(suffix), each encoded
 * without special tokens. The cut falls on the document's end (the middle ends with it, and
 * transformers' right-side truncation cuts there); a query and instruction that leave no room for
 * the document are refused (400) instead of cut.
 */
export class RerankPromptBuilder {
  private template?: Promise<{ prefix: number[]; suffix: number[] }>;
  private head?: { text: string; length: Promise<number> };

  constructor(
    private readonly encode: RerankEncode,
    /** min(8192, MAX_INPUT_TOKENS, max_position_embeddings). */
    readonly maxLength: number,
  ) {}

  async build(query: string, document: string, instruction?: string): Promise<RerankPair> {
    const task = instruction ?? RERANK_DEFAULT_INSTRUCTION;
    const [{ prefix, suffix }, middle] = await Promise.all([
      this.templateIds(),
      this.encode(rerankMiddle(query, document, task)),
    ]);
    const room = this.maxLength - prefix.length - suffix.length;
    if (middle.length <= room) {
      return { tokenIds: [...prefix, ...middle, ...suffix], truncated: false };
    }
    // Only a pair that needs the cut pays for its head's length (once per query and instruction).
    await this.assertQueryFits(query, instruction);
    return { tokenIds: [...prefix, ...middle.slice(0, room), ...suffix], truncated: true };
  }

  /**
   * Throws the 400 for a query (and instruction) that leave no room for a document. A request checks
   * it once before building its pairs, so a huge query is refused after one encoding, not one per
   * document.
   */
  async assertQueryFits(query: string, instruction?: string): Promise<void> {
    const [{ prefix, suffix }, head] = await Promise.all([
      this.templateIds(),
      this.headLength(query, instruction),
    ]);
    const room = this.maxLength - prefix.length - suffix.length;
    if (head > room) {
      throw new InvalidRequestError(
        `The query${instruction === undefined ? ' takes' : ' and instruction take'} ${head} tokens in the template, more than the ${Math.max(0, room)} a query-document pair has room for (${this.maxLength} tokens in all, ${prefix.length + suffix.length} of them the template's); shorten ${instruction === undefined ? 'it' : 'them'}`,
        'query',
        'context_length_exceeded',
      );
    }
  }

  /**
   * Tokens of the instruction and query part, up to `<Document>:` (the space after it joins the
   * document's first word: " hello" is one token). The last query's is kept: a request's pairs share it.
   */
  private headLength(query: string, instruction: string | undefined): Promise<number> {
    const text = rerankMiddle(query, '', instruction ?? RERANK_DEFAULT_INSTRUCTION).trimEnd();
    if (this.head?.text !== text) {
      const length = Promise.resolve(this.encode(text)).then((ids) => ids.length);
      this.head = { text, length };
      length.catch(() => {
        if (this.head?.length === length) this.head = undefined;
      });
    }
    return this.head.length;
  }

  /** The template's own ids (about 40 tokens) in a pair: prefix and suffix, encoded once. */
  async templateLength(): Promise<number> {
    const { prefix, suffix } = await this.templateIds();
    return prefix.length + suffix.length;
  }

  private templateIds(): Promise<{ prefix: number[]; suffix: number[] }> {
    if (!this.template) {
      const template = Promise.all([this.encode(RERANK_PREFIX), this.encode(RERANK_SUFFIX)]).then(
        ([prefix, suffix]) => ({ prefix, suffix }),
      );
      this.template = template;
      // A failed encode (no tokenizer yet) is not kept: the next pair tries again.
      template.catch(() => {
        if (this.template === template) this.template = undefined;
      });
    }
    return this.template;
  }
}
