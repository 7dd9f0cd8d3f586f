/**
 * pytorch_model.bin through the real engine: the demo model's preset and seed generated with
 * `--format bin` must embed exactly (bit-identical fp32 rows on the CPU) as the safetensors demo model.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint, readTensorBytes, readTorchBinTensors } from '@app/checkpoint';
import { NativeEngine, packBatch } from '@app/engine';
import { assertPrerequisites, DEMO_MODEL, NATIVE_ADDON } from './support/test-app';

describe('pytorch_model.bin through the engine', () => {
  let root: string;
  let binModel: string;

  beforeAll(async () => {
    assertPrerequisites();
    root = await mkdtemp(join(tmpdir(), 'torch-bin-e2e-'));
    const config = JSON.parse(await readFile(join(DEMO_MODEL, 'config.json'), 'utf8')) as {
      torch_dtype: string;
    };
    expect(config.torch_dtype).toBe('bfloat16');
    binModel = (
      await generateCheckpoint({ preset: 'tiny', seed: 0, outDir: join(root, 'tiny-bin'), format: 'bin' })
    ).outDir;
  }, 600_000);
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('holds the demo model weights (same preset and seed)', async () => {
    const [norm] = (await readTorchBinTensors(join(binModel, 'pytorch_model.bin'))).filter(
      (tensor) => tensor.name === 'norm.weight',
    );
    const { bytes } = await readTensorBytes(join(DEMO_MODEL, 'model.safetensors'), 'norm.weight');
    expect(Buffer.from(norm.data).equals(bytes)).toBe(true);
  });

  it('embeds bit-identically to the safetensors demo model (CPU fp32)', async () => {
    // Packed sequences of assorted lengths, every Matryoshka size the server offers at both ends.
    const lengths = [1, 5, 17, 64];
    const batch = packBatch(
      lengths.map((length, index) => ({
        tokens: Int32Array.from({ length }, (_, i) => (i * 7919 + index * 104729 + 13) % 151643),
        dimensions: index % 2 === 0 ? 1024 : 32,
      })),
    );
    const embed = async (modelPath: string): Promise<Float32Array> => {
      const engine = new NativeEngine(NATIVE_ADDON);
      try {
        await engine.load({
          modelPath,
          device: 'cpu',
          dtype: 'float32',
          deviceIds: [],
          tensorParallelSize: 1,
        });
        return await engine.embed(batch);
      } finally {
        await engine.dispose();
      }
    };
    const fromSafetensors = await embed(DEMO_MODEL);
    const fromBin = await embed(binModel);
    expect(fromBin.length).toBe(1024 + 32 + 1024 + 32);
    expect(Buffer.from(fromBin.buffer).equals(Buffer.from(fromSafetensors.buffer))).toBe(true);
  }, 300_000);
});
