import { readFile, writeFile, mkdtemp, rm, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint } from './checkpoint-generator';
import { inspectCheckpoint } from './checkpoint-inspector';
import { decodeElements, toBfloat16Bits, toFloat16Bits } from './dtype';
import { readSafetensorsHeader, readTensorBytes } from './safetensors';
import { MINI_ARCHITECTURE } from './testing/mini-architecture';
import {
  encodeStateDictPickle,
  readTorchBin,
  readTorchBinTensors,
  TORCH_BIN_INDEX_FILE_NAME,
  TorchBinFileWriter,
  TorchBinFormatError,
  torchBinFileName,
  unpickleStateDict,
  writeTorchBin,
} from './torch-bin';

describe(TorchBinFileWriter.name, () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'torch-bin-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tensors = [
    {
      name: 'w',
      dtype: 'BF16' as const,
      shape: [2, 3],
      data: Uint16Array.from([1, -2, 0.5, 0.25, 3, -0.125].map(toBfloat16Bits)),
    },
    { name: 'b', dtype: 'F32' as const, shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) },
    {
      name: 'h',
      dtype: 'F16' as const,
      shape: [1, 2, 2],
      data: Uint16Array.from([1, 2, 3, 4].map(toFloat16Bits)),
    },
    { name: 'empty', dtype: 'F32' as const, shape: [0, 4], data: new Float32Array(0) },
    { name: 'scalar', dtype: 'F32' as const, shape: [], data: Float32Array.from([7]) },
  ];

  it('reads back what it wrote, bytes included', async () => {
    const path = join(dir, 'pytorch_model.bin');
    await writeTorchBin(path, tensors);
    const read = await readTorchBinTensors(path);
    expect(read.map((t) => Buffer.from(t.data))).toEqual(tensors.map((t) => Buffer.from(t.data.buffer)));
  });

  it.each([false, true])(
    'round-trips names, dtypes, shapes and bytes (OrderedDict top level: %s)',
    async (orderedDict) => {
      const path = join(dir, 'pytorch_model.bin');
      await writeTorchBin(path, tensors, { orderedDict });

      const sut = await readTorchBin(path);
      const file = await readFile(path);

      expect(sut.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(
        tensors.map((t) => [t.name, t.dtype, t.shape]),
      );
      for (const [index, tensor] of sut.tensors.entries()) {
        const expected = Buffer.from(tensors[index].data.buffer);
        expect(file.subarray(tensor.dataOffset, tensor.dataOffset + tensor.byteLength)).toEqual(expected);
        if (tensor.byteLength > 0) expect(tensor.dataOffset % 64).toBe(0); // torch's record alignment
      }
    },
  );

  it('writes the records torch.save writes, in its order', async () => {
    const path = join(dir, 'pytorch_model.bin');
    await writeTorchBin(path, tensors.slice(0, 2));
    const text = (await readFile(path)).toString('latin1');

    const names = [
      'archive/data.pkl',
      'archive/byteorder',
      'archive/data/0',
      'archive/data/1',
      'archive/version',
    ];
    const positions = names.map((name) => text.indexOf(name));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
  });

  it('streams chunks and refuses an overrun or a close before all data', async () => {
    const path = join(dir, 'x.bin');
    const writer = await TorchBinFileWriter.create(path, [{ name: 'a', dtype: 'F32', shape: [4] }]);
    await writer.write(Float32Array.from([1, 2]));
    await expect(writer.write(Float32Array.from([3, 4, 5]))).rejects.toThrow(/overruns/);
    await expect(writer.close()).rejects.toThrow(/closed before all tensor data/);
  });

  it('names the generator shard files as transformers does', () => {
    expect(torchBinFileName('model.safetensors')).toBe('pytorch_model.bin');
    expect(torchBinFileName('model-00001-of-00002.safetensors')).toBe('pytorch_model-00001-of-00002.bin');
  });

  it('the generator writes the same tensors as .bin (sharded, with its index) as it does as safetensors', async () => {
    const common = { preset: MINI_ARCHITECTURE, seed: 3, maxShardBytes: 40_000 };
    const st = await generateCheckpoint({ ...common, outDir: join(dir, 'st') });
    const bin = await generateCheckpoint({ ...common, outDir: join(dir, 'bin'), format: 'bin' });

    expect(bin.files).toContain(TORCH_BIN_INDEX_FILE_NAME);
    expect(bin.shards.map((s) => s.file)).toEqual(st.shards.map((s) => torchBinFileName(s.file)));
    const index = JSON.parse(await readFile(join(dir, 'bin', TORCH_BIN_INDEX_FILE_NAME), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    for (const [stShard, binShard] of st.shards.map((s, i) => [s.file, bin.shards[i].file])) {
      const header = await readSafetensorsHeader(join(dir, 'st', stShard));
      const binTensors = await readTorchBinTensors(join(dir, 'bin', binShard));
      expect(binTensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(
        header.tensors.map((t) => [t.name, t.dtype, t.shape]),
      );
      for (const tensor of binTensors) {
        expect(index.weight_map[tensor.name]).toBe(binShard);
        const { bytes } = await readTensorBytes(join(dir, 'st', stShard), tensor.name);
        expect(Buffer.from(tensor.data).equals(bytes)).toBe(true);
      }
    }
  });

  it('model inspect reads a .bin checkpoint as it reads safetensors, and prefers safetensors beside it', async () => {
    const outDir = join(dir, 'bin');
    await generateCheckpoint({ preset: MINI_ARCHITECTURE, seed: 0, outDir, format: 'bin' });
    const report = await inspectCheckpoint(outDir);
    expect(report.issues.filter((issue) => issue.severity === 'error')).toEqual([]);
    expect(report.summary.weightFormat).toBe('bin');
    expect(report.summary.shards.map((shard) => shard.file)).toEqual(['pytorch_model.bin']);
    expect(report.summary.dtypes).toEqual(['BF16']);

    await writeFile(join(outDir, 'model.safetensors'), 'not read unless preferred');
    const both = await inspectCheckpoint(outDir);
    expect(both.summary.weightFormat).toBe('safetensors');
    expect(both.issues).toContainEqual(
      expect.objectContaining({ severity: 'error', file: 'model.safetensors' }),
    );
  });

  it('reads the files torch.save wrote (protocols 2 and 4), with the values they were saved from', async () => {
    const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'torch-bin');
    const expected = JSON.parse(await readFile(join(fixtures, 'torch-fixtures.json'), 'utf8')) as Record<
      string,
      Record<string, number[]>
    >;
    expect(Object.keys(expected).length).toBeGreaterThanOrEqual(5);
    for (const [file, tensors] of Object.entries(expected)) {
      const read = await readTorchBinTensors(join(fixtures, file));
      expect(read.map((tensor) => tensor.name)).toEqual(Object.keys(tensors));
      for (const tensor of read) {
        expect(Array.from(decodeElements(tensor.dtype, tensor.data))).toEqual(tensors[tensor.name]);
      }
    }
    await expect(readTorchBin(join(fixtures, 'torch-legacy.bin'))).rejects.toThrow(
      /legacy torch\.save format/,
    );
  });

  describe('reader errors name the file', () => {
    const write = async (): Promise<string> => {
      const path = join(dir, 'pytorch_model.bin');
      await writeTorchBin(path, tensors.slice(0, 2));
      return path;
    };

    it('refuses a file that is not a zip', async () => {
      const path = join(dir, 'pytorch_model.bin');
      await writeFile(path, 'not a checkpoint at all');
      await expect(readTorchBin(path)).rejects.toThrow(`${path}: is not a zip archive`);
    });

    it('refuses the legacy format and says how to convert', async () => {
      const path = join(dir, 'pytorch_model.bin');
      // What torch.save(..., _use_new_zipfile_serialization=False) starts with: a protocol-2 pickle
      // of the magic number 0x1950a86a20f9469cfc6c.
      await writeFile(path, Buffer.from('80028a0a6cfc9c46f9206aa8501950', 'hex'));
      await expect(readTorchBin(path)).rejects.toThrow(
        /legacy torch\.save format.*torch\.save\(torch\.load\(path, weights_only=True\), path\)/,
      );
    });

    it('refuses a truncated archive', async () => {
      const path = await write();
      await truncate(path, (await stat(path)).size - 30);
      await expect(readTorchBin(path)).rejects.toThrow(`${path}: truncated or corrupt zip archive`);
    });

    it('refuses a global other than the state_dict ones, without running anything', () => {
      const pickle = Buffer.concat([
        Buffer.from([0x80, 0x02]),
        Buffer.from('cos\nsystem\n', 'latin1'),
        Buffer.from('.'),
      ]);
      expect(() => unpickleStateDict('f.bin', pickle)).toThrow(
        'f.bin: data.pkl: refuses the global os.system',
      );
    });

    it('refuses a non-tensor value and names it', async () => {
      const path = join(dir, 'pytorch_model.bin');
      // {'w': tensor, 'b': tensor, 'step': 5}: an extra SETITEM before STOP
      const step = Buffer.from('X\x04\x00\x00\x00stepK\x05s', 'latin1');
      await writeTorchBin(path, tensors.slice(0, 2), {
        editPickle: (pickle) => Buffer.concat([pickle.subarray(0, -1), step, pickle.subarray(-1)]),
      });
      await expect(readTorchBin(path)).rejects.toThrow(`${path} [step]: value is a number, not a tensor`);
    });

    it('refuses a zip whose pickle names a storage record it lacks', async () => {
      const path = join(dir, 'pytorch_model.bin');
      await writeTorchBin(path, tensors.slice(0, 2), {
        editPickle: (pickle) =>
          Buffer.from(
            pickle.toString('latin1').replace('X\x01\x00\x00\x001', 'X\x01\x00\x00\x009'),
            'latin1',
          ),
      });
      await expect(readTorchBin(path)).rejects.toThrow(
        `${path} [b]: storage record archive/data/9 is missing`,
      );
    });

    it('reads a pickle with a memoised OrderedDict and refuses an unexpected opcode', () => {
      const ok = encodeStateDictPickle([{ name: 'a', dtype: 'F32', shape: [2] }], true);
      expect([...unpickleStateDict('f.bin', ok).keys()]).toEqual(['a']);
      const bad = Buffer.concat([ok.subarray(0, 2), Buffer.from([0x69]), ok.subarray(2)]);
      expect(() => unpickleStateDict('f.bin', bad)).toThrow(
        'f.bin: data.pkl: unsupported opcode 0x69 at byte 2',
      );
    });

    it('is a TorchBinFormatError', async () => {
      const path = join(dir, 'pytorch_model.bin');
      await writeFile(path, 'x');
      await expect(readTorchBin(path)).rejects.toBeInstanceOf(TorchBinFormatError);
    });
  });
});
