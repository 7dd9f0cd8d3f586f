import { FileHandle, open } from 'node:fs/promises';
import { bytesPerElement, isSafetensorsDtype, SafetensorsDtype } from './dtype';
import { parseStrictJson } from './strict-json';

/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`, offsets relative
 * to the data section), then the tensor data back to back with no holes.
 * https://github.com/huggingface/safetensors#format
 */

export interface TensorSpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
}

export interface TensorEntry extends TensorSpec {
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: readonly [number, number];
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** N, the JSON header's byte length (including padding). */
  headerByteLength: number;
  /** 8 + N: where tensor data starts in the file. */
  dataOffset: number;
  metadata: Record<string, string>;
  /** Entries in data order. */
  tensors: TensorEntry[];
}

/** A structural problem in a safetensors file; names the file and, where it applies, the tensor. */
export class SafetensorsFormatError extends Error {
  constructor(
    readonly file: string,
    message: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? ` [${tensor}]` : ''}: ${message}`);
    this.name = 'SafetensorsFormatError';
  }
}

/** The safetensors reference implementation refuses headers larger than this. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Header JSON is padded with spaces so that tensor data starts 8-byte aligned. */
const HEADER_ALIGNMENT = 8;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export function tensorByteLength(spec: Pick<TensorSpec, 'dtype' | 'shape'>): number {
  return elementCount(spec.shape) * bytesPerElement(spec.dtype);
}

/** Lays the tensors out back to back in the given order and encodes the padded header. */
export function encodeSafetensorsHeader(
  tensors: readonly TensorSpec[],
  metadata: Record<string, string> = {},
): { header: Buffer; entries: TensorEntry[]; dataByteLength: number } {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  const entries: TensorEntry[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const spec of tensors) {
    if (spec.name === '__metadata__' || seen.has(spec.name)) {
      throw new RangeError(`tensor name "${spec.name}" is reserved or repeated`);
    }
    if (!spec.shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      throw new RangeError(`tensor "${spec.name}" has a bad shape [${spec.shape.join(', ')}]`);
    }
    seen.add(spec.name);
    const end = offset + tensorByteLength(spec);
    const entry: TensorEntry = { ...spec, shape: [...spec.shape], dataOffsets: [offset, end] };
    entries.push(entry);
    json[spec.name] = { dtype: spec.dtype, shape: entry.shape, data_offsets: entry.dataOffsets };
    offset = end;
  }
  const raw = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = Math.ceil(raw.length / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  raw.copy(header, 8);
  return { header, entries, dataByteLength: offset };
}

/**
 * Writes one safetensors file front to back: the header first (every shape is known up front), then
 * each tensor's bytes in order through `write`. Nothing but the chunk in hand is held in memory, so an
 * 8 GB checkpoint streams out. Several writes may be in flight; each lands at the position it was given.
 */
export class SafetensorsFileWriter {
  private position = 0;
  private tensorIndex = 0;
  private tensorWritten = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly entries: readonly TensorEntry[],
    private readonly dataOffset: number,
    readonly dataByteLength: number,
  ) {}

  static async create(
    path: string,
    tensors: readonly TensorSpec[],
    metadata: Record<string, string> = {},
  ): Promise<SafetensorsFileWriter> {
    const { header, entries, dataByteLength } = encodeSafetensorsHeader(tensors, metadata);
    const handle = await open(path, 'w');
    try {
      await handle.write(header, 0, header.length, 0);
    } catch (error) {
      await handle.close();
      throw error;
    }
    return new SafetensorsFileWriter(path, handle, entries, header.length, dataByteLength);
  }

  /** The tensor the next write belongs to, or undefined once all data is written. */
  get currentTensor(): TensorEntry | undefined {
    return this.entries[this.tensorIndex];
  }

  get fileByteLength(): number {
    return this.dataOffset + this.dataByteLength;
  }

  /**
   * Appends bytes to the current tensor. A chunk never spans two tensors. The returned promise settles
   * when the bytes are in the file; keep the buffer untouched until then.
   */
  write(chunk: ArrayBufferView): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: write after close`));
    const tensor = this.currentTensor;
    if (!tensor) return Promise.reject(new RangeError(`${this.path}: every tensor is already written`));
    const tensorBytes = tensor.dataOffsets[1] - tensor.dataOffsets[0];
    if (this.tensorWritten + chunk.byteLength > tensorBytes) {
      return Promise.reject(
        new RangeError(`${this.path} [${tensor.name}]: chunk overruns the tensor's ${tensorBytes} bytes`),
      );
    }
    const at = this.dataOffset + this.position;
    this.position += chunk.byteLength;
    this.tensorWritten += chunk.byteLength;
    while (this.currentTensor) {
      const current = this.currentTensor;
      if (this.tensorWritten < current.dataOffsets[1] - current.dataOffsets[0]) break;
      this.tensorIndex += 1;
      this.tensorWritten = 0;
    }
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    return this.writeFully(bytes, at);
  }

  /** Closes the file; fails if some tensor data was never written. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
    const missing = this.currentTensor;
    if (missing) {
      throw new RangeError(`${this.path} [${missing.name}]: closed before all tensor data was written`);
    }
  }

  /** Closes without the completeness check (for error paths). */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  private async writeFully(bytes: Uint8Array, at: number): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done, at + done);
      if (bytesWritten <= 0) throw new Error(`${this.path}: short write at byte ${at + done}`);
      done += bytesWritten;
    }
  }
}

/** Writes a small safetensors file from in-memory tensors (tests, tooling). */
export async function writeSafetensorsFile(
  path: string,
  tensors: ReadonlyArray<TensorSpec & { data: ArrayBufferView }>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const writer = await SafetensorsFileWriter.create(path, tensors, metadata);
  try {
    for (const tensor of tensors) {
      if (tensor.data.byteLength !== tensorByteLength(tensor)) {
        throw new RangeError(
          `${path} [${tensor.name}]: ${tensor.data.byteLength} data bytes for shape [${tensor.shape.join(', ')}] ${tensor.dtype}`,
        );
      }
      if (tensor.data.byteLength > 0) await writer.write(tensor.data);
    }
  } catch (error) {
    await writer.abandon();
    throw error;
  }
  await writer.close();
}

/**
 * Reads and parses a file's header without touching tensor data. Fails on anything that stops the
 * header being read (too short, bad length, bad JSON, bad entries); leaves layout checks against the
 * file size to `layoutProblems` so a caller can report every one.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const handle = await open(path, 'r');
  try {
    const { size: fileSize } = await handle.stat();
    if (fileSize < 8)
      throw new SafetensorsFormatError(path, `file is ${fileSize} bytes, too short for a header`);
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const declared = prefix.readBigUInt64LE(0);
    if (declared > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
      throw new SafetensorsFormatError(
        path,
        `header length ${declared} exceeds ${declared > BigInt(MAX_HEADER_BYTES) ? `the ${MAX_HEADER_BYTES}-byte limit` : `the file (${fileSize} bytes)`}`,
      );
    }
    const headerByteLength = Number(declared);
    const raw = Buffer.alloc(headerByteLength);
    await handle.read(raw, 0, headerByteLength, 8);
    return parseHeaderJson(path, fileSize, headerByteLength, raw);
  } finally {
    await handle.close();
  }
}

function parseHeaderJson(
  path: string,
  fileSize: number,
  headerByteLength: number,
  raw: Buffer,
): SafetensorsHeader {
  let json: unknown;
  try {
    // As the engine reads it: a tensor named twice is an error, not the last one's entry.
    json = parseStrictJson(raw.toString('utf8'));
  } catch (error) {
    throw new SafetensorsFormatError(path, `header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsFormatError(path, 'header is not a JSON object');
  }
  const metadata: Record<string, string> = {};
  const tensors: TensorEntry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null) {
        throw new SafetensorsFormatError(path, '__metadata__ is not an object');
      }
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (typeof item !== 'string')
          throw new SafetensorsFormatError(path, `__metadata__.${key} is not a string`);
        metadata[key] = item;
      }
      continue;
    }
    tensors.push(parseEntry(path, name, value));
  }
  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  return { path, fileSize, headerByteLength, dataOffset: 8 + headerByteLength, metadata, tensors };
}

function parseEntry(path: string, name: string, value: unknown): TensorEntry {
  if (typeof value !== 'object' || value === null) {
    throw new SafetensorsFormatError(path, 'entry is not an object', name);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDtype(dtype))
    throw new SafetensorsFormatError(path, `unknown dtype ${String(dtype)}`, name);
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    throw new SafetensorsFormatError(path, `bad shape ${JSON.stringify(shape)}`, name);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    throw new SafetensorsFormatError(path, `bad data_offsets ${JSON.stringify(offsets)}`, name);
  }
  return { name, dtype, shape: shape as number[], dataOffsets: [offsets[0], offsets[1]] };
}

/**
 * Every layout problem of a parsed header: entries whose byte range disagrees with shape x dtype,
 * holes or overlaps between entries, and a file shorter (truncated) or longer than the data says.
 */
export function layoutProblems(header: SafetensorsHeader): SafetensorsFormatError[] {
  const problems: SafetensorsFormatError[] = [];
  let expectedBegin = 0;
  for (const entry of header.tensors) {
    const size = entry.dataOffsets[1] - entry.dataOffsets[0];
    const expected = tensorByteLength(entry);
    if (size !== expected) {
      problems.push(
        new SafetensorsFormatError(
          header.path,
          `data_offsets span ${size} bytes but shape [${entry.shape.join(', ')}] ${entry.dtype} needs ${expected}`,
          entry.name,
        ),
      );
    }
    if (entry.dataOffsets[0] !== expectedBegin) {
      problems.push(
        new SafetensorsFormatError(
          header.path,
          `data starts at ${entry.dataOffsets[0]}, expected ${expectedBegin} (${entry.dataOffsets[0] > expectedBegin ? 'hole' : 'overlap'})`,
          entry.name,
        ),
      );
    }
    expectedBegin = Math.max(expectedBegin, entry.dataOffsets[1]);
  }
  const expectedSize = header.dataOffset + expectedBegin;
  if (header.fileSize < expectedSize) {
    const cut = header.tensors.filter((entry) => header.dataOffset + entry.dataOffsets[1] > header.fileSize);
    problems.push(
      new SafetensorsFormatError(
        header.path,
        `truncated: ${header.fileSize} bytes, the header describes ${expectedSize}; incomplete: ${cut
          .map((entry) => entry.name)
          .slice(0, 5)
          .join(', ')}${cut.length > 5 ? `, and ${cut.length - 5} more` : ''}`,
        cut[0]?.name,
      ),
    );
  } else if (header.fileSize > expectedSize) {
    problems.push(
      new SafetensorsFormatError(
        header.path,
        `${header.fileSize - expectedSize} trailing bytes after the data (file ${header.fileSize}, expected ${expectedSize})`,
      ),
    );
  }
  return problems;
}

/** Reads one tensor's raw bytes (little-endian elements). */
export async function readTensorBytes(
  path: string,
  name: string,
): Promise<{ entry: TensorEntry; bytes: Buffer }> {
  const header = await readSafetensorsHeader(path);
  const entry = header.tensors.find((candidate) => candidate.name === name);
  if (!entry) throw new SafetensorsFormatError(path, 'no such tensor', name);
  const length = entry.dataOffsets[1] - entry.dataOffsets[0];
  const bytes = Buffer.alloc(length);
  const handle = await open(path, 'r');
  try {
    const { bytesRead } = await handle.read(bytes, 0, length, header.dataOffset + entry.dataOffsets[0]);
    if (bytesRead !== length)
      throw new SafetensorsFormatError(path, `read ${bytesRead} of ${length} bytes`, name);
  } finally {
    await handle.close();
  }
  return { entry, bytes };
}
