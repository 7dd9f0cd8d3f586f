import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectModelTask } from './model-task';

describe(detectModelTask.name, () => {
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'model-task-'));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** A checkpoint directory with just the files detection reads. */
  async function checkpoint(
    name: string,
    config: Record<string, unknown> | string | null,
    extraFiles: string[] = [],
  ): Promise<string> {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    if (config !== null) {
      await writeFile(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    }
    for (const file of extraFiles) await writeFile(join(dir, file), '[]');
    return dir;
  }

  const causalLm = { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3' };

  it('makes a sequence classifier a reranker with the score head, whatever its name', async () => {
    const dir = await checkpoint('converted', {
      architectures: ['Qwen3ForSequenceClassification'],
      model_type: 'qwen3',
    });

    await expect(detectModelTask(dir)).resolves.toEqual({
      task: 'rerank',
      head: 'classifier',
      reason: 'rerank: Qwen3ForSequenceClassification (score.weight)',
    });
    await expect(detectModelTask(dir, 'rerank')).resolves.toMatchObject({
      head: 'classifier',
      reason: 'rerank: MODEL_TASK=rerank, Qwen3ForSequenceClassification (score.weight)',
    });
  });

  it('makes a Qwen3ForCausalLM named like a reranker a yes/no reranker', async () => {
    const dir = await checkpoint('Qwen3-Reranker-0.6B', causalLm);

    await expect(detectModelTask(dir)).resolves.toEqual({
      task: 'rerank',
      head: 'yes-no',
      reason:
        'rerank: Qwen3ForCausalLM named Qwen3-Reranker-0.6B, no sentence-transformers files ("yes" and "no" logits)',
    });
  });

  it("reads the name from config _name_or_path and from a Hub cache snapshot's repository", async () => {
    const named = await checkpoint('anything', { ...causalLm, _name_or_path: 'qwen3-reranker-tiny' });
    const snapshot = await checkpoint(
      join('models--Qwen--Qwen3-Reranker-4B', 'snapshots', 'a1b2c3'),
      causalLm,
    );

    await expect(detectModelTask(named)).resolves.toMatchObject({ task: 'rerank', head: 'yes-no' });
    await expect(detectModelTask(snapshot)).resolves.toMatchObject({
      task: 'rerank',
      reason: expect.stringContaining('Qwen/Qwen3-Reranker-4B'),
    });
  });

  it('keeps a CausalLM with sentence-transformers files an embedding model, even named rerank', async () => {
    const modules = await checkpoint('reranker-but-st', causalLm, ['modules.json']);
    const prompts = await checkpoint('rerank-prompts', causalLm, ['config_sentence_transformers.json']);

    await expect(detectModelTask(modules)).resolves.toEqual({
      task: 'embed',
      head: 'embedding',
      reason: 'embed: Qwen3ForCausalLM with modules.json',
    });
    await expect(detectModelTask(prompts)).resolves.toMatchObject({ task: 'embed', head: 'embedding' });
  });

  it('embeds with anything else: other names, other architectures, no config; refuses a broken one', async () => {
    const plain = await checkpoint('Qwen3-Embedding-tiny', causalLm);
    const otherFamily = await checkpoint('llama-reranker', { architectures: ['LlamaForCausalLM'] });
    const missing = await checkpoint('reranker-no-config', null);
    const broken = await checkpoint('reranker-broken', '{"architectures": [');

    await expect(detectModelTask(plain)).resolves.toEqual({
      task: 'embed',
      head: 'embedding',
      reason: 'embed: Qwen3ForCausalLM',
    });
    await expect(detectModelTask(otherFamily)).resolves.toMatchObject({ task: 'embed' });
    await expect(detectModelTask(missing)).resolves.toMatchObject({
      task: 'embed',
      reason: 'embed: no architectures in config.json',
    });
    await expect(detectModelTask(broken)).rejects.toThrow(/config\.json is not valid JSON/);
  });

  it('lets MODEL_TASK win: rerank on a CausalLM means yes/no, embed means embedding', async () => {
    const plain = await checkpoint('plain-lm', causalLm);
    const classifier = await checkpoint('classifier', { architectures: ['Qwen3ForSequenceClassification'] });

    await expect(detectModelTask(plain, 'rerank')).resolves.toEqual({
      task: 'rerank',
      head: 'yes-no',
      reason: 'rerank: MODEL_TASK=rerank, Qwen3ForCausalLM ("yes" and "no" logits)',
    });
    await expect(detectModelTask(classifier, 'embed')).resolves.toEqual({
      task: 'embed',
      head: 'embedding',
      reason: 'embed: MODEL_TASK=embed (Qwen3ForSequenceClassification)',
    });
    await expect(detectModelTask(plain, 'auto')).resolves.toMatchObject({ task: 'embed' });
  });
});
