import { cp, mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint } from './checkpoint-generator';
import { CheckpointIssue, formatCheckpointReport, inspectCheckpoint } from './checkpoint-inspector';
import { TensorSpec } from './safetensors';
import { rewriteWeights as rewriteCheckpointWeights } from './testing/broken-checkpoints';
import { MINI_ARCHITECTURE } from './testing/mini-architecture';

type StoredTensor = TensorSpec & { data: Uint8Array };

describe(inspectCheckpoint.name, () => {
  let root: string;
  let single: string;
  let sharded: string;
  let dir: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'inspect-'));
    single = (await generateCheckpoint({ preset: MINI_ARCHITECTURE, seed: 0, outDir: join(root, 'single') }))
      .outDir;
    sharded = (
      await generateCheckpoint({
        preset: MINI_ARCHITECTURE,
        seed: 0,
        outDir: join(root, 'sharded'),
        maxShardBytes: 40_000,
      })
    ).outDir;
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  let copies = 0;
  const copyOf = async (source: string): Promise<string> => {
    dir = join(root, `case-${copies++}`);
    await cp(source, dir, { recursive: true });
    return dir;
  };

  const rewriteWeights = (file: string, transform: (tensors: StoredTensor[]) => StoredTensor[]) =>
    rewriteCheckpointWeights(dir, file, transform);

  const errors = (issues: CheckpointIssue[]) => issues.filter((issue) => issue.severity === 'error');

  it('passes a generated checkpoint and summarises it', async () => {
    const sut = await inspectCheckpoint(single);

    expect(sut.ok).toBe(true);
    expect(sut.issues).toEqual([]);
    expect(sut.summary).toMatchObject({
      architecture: MINI_ARCHITECTURE,
      dtypes: ['BF16'],
      tensorPrefix: '',
      shards: [{ file: 'model.safetensors', tensors: 24 }],
      pooling: 'lasttoken',
      tokenizer: { file: 'tokenizer.json', appendsEos: true },
      generator: { generator: 'qwen3-embed-server', preset: 'custom', seed: '0' },
    });
    expect(sut.summary.storedParameters).toBe(sut.summary.parameters?.total);
    expect(formatCheckpointReport(sut)).toMatch(/status\s+OK \(0 errors, 0 warnings\)/);
  });

  it('names a missing tensor', async () => {
    await copyOf(single);
    await rewriteWeights('model.safetensors', (tensors) =>
      tensors.filter((tensor) => tensor.name !== 'layers.1.self_attn.k_norm.weight'),
    );

    const sut = await inspectCheckpoint(dir);

    expect(sut.ok).toBe(false);
    expect(errors(sut.issues)).toEqual([
      {
        severity: 'error',
        file: 'model.safetensors',
        tensor: 'layers.1.self_attn.k_norm.weight',
        message: 'missing tensor',
      },
    ]);
  });

  it('names a misshaped tensor and its file', async () => {
    await copyOf(single);
    await rewriteWeights('model.safetensors', (tensors) =>
      tensors.map((tensor) =>
        tensor.name === 'layers.0.self_attn.k_proj.weight' ? { ...tensor, shape: [64, 32] } : tensor,
      ),
    );

    const sut = await inspectCheckpoint(dir);

    expect(errors(sut.issues)).toEqual([
      expect.objectContaining({
        file: 'model.safetensors',
        tensor: 'layers.0.self_attn.k_proj.weight',
        message: 'shape [64, 32], expected [32, 64]',
      }),
    ]);
  });

  it('catches a truncated weights file', async () => {
    await copyOf(single);
    const path = join(dir, 'model.safetensors');
    await truncate(path, (await stat(path)).size - 100);

    const sut = await inspectCheckpoint(dir);

    expect(errors(sut.issues)).toEqual([
      expect.objectContaining({
        file: 'model.safetensors',
        tensor: 'norm.weight',
        message: expect.stringMatching(/^truncated/),
      }),
    ]);
  });

  it('accepts transformers-style `model.` prefixed names', async () => {
    await copyOf(single);
    await rewriteWeights('model.safetensors', (tensors) =>
      tensors.map((tensor) => ({ ...tensor, name: `model.${tensor.name}` })),
    );

    const sut = await inspectCheckpoint(dir);

    expect(sut.issues).toEqual([]);
    expect(sut.summary.tensorPrefix).toBe('model.');
  });

  it('checks the shard index against the shards', async () => {
    await copyOf(sharded);
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8'));
    const [first, second] = Object.keys(index.weight_map).sort();
    const swapped = index.weight_map[first];
    index.weight_map[first] = index.weight_map[second];
    index.weight_map[second] = swapped;
    await writeFile(indexPath, JSON.stringify(index));

    const sut = await inspectCheckpoint(dir);

    expect(index.weight_map[first]).not.toBe(index.weight_map[second]);
    expect(sut.ok).toBe(false);
    expect(errors(sut.issues).map((issue) => issue.tensor)).toEqual(expect.arrayContaining([first, second]));
  });

  it('names a shard the index lists but the directory lacks', async () => {
    await copyOf(sharded);
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const lastShard = [...new Set<string>(Object.values(index.weight_map))].sort().pop()!;
    await unlink(join(dir, lastShard));

    const sut = await inspectCheckpoint(dir);

    expect(sut.ok).toBe(false);
    expect(errors(sut.issues)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ file: lastShard, message: expect.stringMatching(/^missing/) }),
        expect.objectContaining({ message: 'missing tensor', tensor: 'norm.weight' }),
      ]),
    );
  });

  it('reports missing config fields', async () => {
    await copyOf(single);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    delete config.hidden_size;
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));

    const sut = await inspectCheckpoint(dir);

    expect(errors(sut.issues)).toEqual([
      expect.objectContaining({ file: 'config.json', message: 'hidden_size is missing' }),
    ]);
  });

  it('names the families it knows when model_type is another', async () => {
    await copyOf(single);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    config.model_type = 'gpt2';
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));

    const sut = await inspectCheckpoint(dir);

    expect(errors(sut.issues)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          file: 'config.json',
          message:
            'model_type is "gpt2", expected one of "qwen3", "qwen2", "mistral", "llama", "bert", "xlm-roberta"',
        }),
      ]),
    );
  });

  it('warns when tokenizer.json would not append <|endoftext|>', async () => {
    await copyOf(single);
    const tokenizer = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    tokenizer.post_processor = {
      type: 'ByteLevel',
      add_prefix_space: false,
      trim_offsets: false,
      use_regex: false,
    };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));

    const sut = await inspectCheckpoint(dir);

    expect(sut.ok).toBe(true);
    expect(sut.issues).toEqual([
      expect.objectContaining({
        severity: 'warning',
        file: 'tokenizer.json',
        message: expect.stringMatching(/does not append/),
      }),
    ]);
  });

  it('fails on a directory that does not exist', async () => {
    const sut = await inspectCheckpoint(join(root, 'nowhere'));

    expect(sut.ok).toBe(false);
    expect(sut.issues[0].message).toBe('not a directory');
  });
});
