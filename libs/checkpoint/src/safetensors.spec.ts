import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeElements, toBfloat16Bits } from './dtype';
import {
  layoutProblems,
  readSafetensorsHeader,
  readTensorBytes,
  SafetensorsFileWriter,
  SafetensorsFormatError,
  writeSafetensorsFile,
} from './safetensors';

describe(SafetensorsFileWriter.name, () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const bf16 = (values: number[]): Uint16Array => Uint16Array.from(values.map(toBfloat16Bits));

  it('round-trips tensors, shapes, dtypes and metadata through the header reader', async () => {
    const path = join(dir, 'model.safetensors');
    const weight = bf16([1, -2, 0.5, 0.25, 3, -0.125]);
    const bias = Float32Array.from([0.1, 0.2, 0.3]);
    await writeSafetensorsFile(
      path,
      [
        { name: 'w', dtype: 'BF16', shape: [2, 3], data: weight },
        { name: 'b', dtype: 'F32', shape: [3], data: bias },
      ],
      { format: 'pt' },
    );

    const sut = await readSafetensorsHeader(path);

    expect(sut.metadata).toEqual({ format: 'pt' });
    expect(sut.dataOffset % 8).toBe(0);
    expect(
      sut.tensors.map(({ name, dtype, shape, dataOffsets }) => ({ name, dtype, shape, dataOffsets })),
    ).toEqual([
      { name: 'w', dtype: 'BF16', shape: [2, 3], dataOffsets: [0, 12] },
      { name: 'b', dtype: 'F32', shape: [3], dataOffsets: [12, 24] },
    ]);
    expect(layoutProblems(sut)).toEqual([]);
    const { bytes } = await readTensorBytes(path, 'w');
    expect(Array.from(decodeElements('BF16', bytes))).toEqual([1, -2, 0.5, 0.25, 3, -0.125]);
    const { bytes: biasBytes } = await readTensorBytes(path, 'b');
    expect(Array.from(decodeElements('F32', biasBytes))).toEqual(Array.from(bias));
  });

  it('streams a tensor in several chunks', async () => {
    const path = join(dir, 'chunked.safetensors');
    const sut = await SafetensorsFileWriter.create(path, [{ name: 'x', dtype: 'F32', shape: [4, 1000] }]);
    const pending: Array<Promise<void>> = [];
    for (let row = 0; row < 4; row++) pending.push(sut.write(new Float32Array(1000).fill(row)));
    await Promise.all(pending);
    await sut.close();

    const { bytes } = await readTensorBytes(path, 'x');
    const values = decodeElements('F32', bytes);
    expect([values[0], values[999], values[1000], values[3999]]).toEqual([0, 0, 1, 3]);
  });

  it('refuses a chunk that overruns its tensor and a close before all data is written', async () => {
    const sut = await SafetensorsFileWriter.create(join(dir, 'short.safetensors'), [
      { name: 'a', dtype: 'F32', shape: [2] },
      { name: 'b', dtype: 'F32', shape: [2] },
    ]);
    await expect(sut.write(new Float32Array(3))).rejects.toThrow(/\[a\].*overruns/);
    await sut.write(new Float32Array(2));
    await expect(sut.close()).rejects.toThrow(/\[b\].*closed before all tensor data/);
  });

  it('reports a truncated file and names the cut tensors', async () => {
    const path = join(dir, 'cut.safetensors');
    await writeSafetensorsFile(path, [
      { name: 'first', dtype: 'F32', shape: [8], data: new Float32Array(8) },
      { name: 'second', dtype: 'F32', shape: [8], data: new Float32Array(8) },
    ]);
    await truncate(path, (await stat(path)).size - 4);

    const problems = layoutProblems(await readSafetensorsHeader(path));

    expect(problems).toHaveLength(1);
    expect(problems[0]).toBeInstanceOf(SafetensorsFormatError);
    expect(problems[0].tensor).toBe('second');
    expect(problems[0].message).toMatch(/truncated/);
  });

  it('rejects a file whose header length runs past the end', async () => {
    const path = join(dir, 'bad.safetensors');
    await writeSafetensorsFile(path, [{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    await truncate(path, 12);

    await expect(readSafetensorsHeader(path)).rejects.toThrow(/header length \d+ exceeds the file/);
  });

  it('refuses a header naming a tensor twice, as the engine does', async () => {
    const path = join(dir, 'twice.safetensors');
    const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const header = Buffer.from(`{"x":${entry},"x":${entry}}`);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    await writeFile(path, Buffer.concat([length, header, Buffer.alloc(4)]));

    await expect(readSafetensorsHeader(path)).rejects.toThrow(
      new SafetensorsFormatError(path, 'header is not valid JSON (duplicate key "x")'),
    );
  });
});
