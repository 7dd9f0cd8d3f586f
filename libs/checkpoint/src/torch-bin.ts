import { FileHandle, open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { bytesPerElement, SafetensorsDtype } from './dtype';
import { elementCount, tensorByteLength, TensorSpec } from './safetensors';

/**
 * torch.save's zip format (PyTorch >= 1.6), as `pytorch_model.bin` holds a state_dict:
 *   archive/data.pkl      pickle (protocol 2) of {name: torch._utils._rebuild_tensor_v2(...)}, each
 *                         storage a persistent id ('storage', torch.<T>Storage, key, 'cpu', numel)
 *   archive/byteorder     "little"
 *   archive/data/<key>    each storage's raw little-endian bytes
 *   archive/version       "3\n"
 * Entries are stored (never compressed), each one's data 64-byte aligned by an extra field, as
 * PyTorch's writer (caffe2/serialize/inline_container.cc) lays them out; zip64 records where sizes or
 * offsets pass 4 GiB. The reader below interprets only the pickle opcodes a state_dict uses and
 * refuses every global but the few a state_dict needs: nothing in the file is ever executed.
 */

/** The storage class torch pickles for each dtype (torch.<name>). */
const STORAGE_CLASS: Partial<Record<SafetensorsDtype, string>> = {
  F32: 'FloatStorage',
  F16: 'HalfStorage',
  BF16: 'BFloat16Storage',
  F64: 'DoubleStorage',
  I64: 'LongStorage',
  I32: 'IntStorage',
  I16: 'ShortStorage',
  I8: 'CharStorage',
  U8: 'ByteStorage',
  BOOL: 'BoolStorage',
};
const DTYPE_OF_STORAGE = new Map<string, SafetensorsDtype>(
  Object.entries(STORAGE_CLASS).map(([dtype, cls]) => [cls, dtype as SafetensorsDtype]),
);

export const TORCH_BIN_ARCHIVE = 'archive';
const ALIGNMENT = 64;
const U32_MAX = 0xffffffff;
const LOCAL_HEADER = 30;
const CENTRAL_HEADER = 46;
/** DOS date of 1980-01-01, time 00:00: fixed, so the same seed writes the same bytes. */
const DOS_DATE = 0x21;

// ---------------------------------------------------------------------------------------------------
// Pickle writer (protocol 2, the subset torch.save emits for a state_dict)

class PickleEncoder {
  private readonly parts: Buffer[] = [];
  private readonly memo = new Map<string, number>();

  raw(bytes: number[] | Buffer): void {
    this.parts.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  int(value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`not an integer: ${value}`);
    if (value >= 0 && value < 0x100) this.raw([0x4b, value]);
    else if (value >= 0 && value < 0x10000) this.raw([0x4d, value & 0xff, value >> 8]);
    else if (value >= -0x80000000 && value < 0x80000000) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a;
      b.writeInt32LE(value, 1);
      this.raw(b);
    } else {
      // LONG1: little-endian two's complement, shortest form
      let big = BigInt(value);
      const bytes: number[] = [];
      for (;;) {
        const byte = Number(big & 0xffn);
        bytes.push(byte);
        big >>= 8n;
        if ((big === 0n && (byte & 0x80) === 0) || (big === -1n && (byte & 0x80) !== 0)) break;
      }
      this.raw([0x8a, bytes.length, ...bytes]);
    }
  }

  string(value: string): void {
    const utf8 = Buffer.from(value, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = 0x58; // BINUNICODE
    head.writeUInt32LE(utf8.length, 1);
    this.raw(head);
    this.raw(utf8);
  }

  /** GLOBAL, memoised as Python's pickler does (BINPUT once, BINGET after). */
  global(module: string, name: string): void {
    const key = `${module}\n${name}`;
    const slot = this.memo.get(key);
    if (slot !== undefined) {
      this.raw(slot < 0x100 ? [0x68, slot] : [0x6a, ...u32(slot)]);
      return;
    }
    this.raw([0x63]);
    this.raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
    const next = this.memo.size;
    this.memo.set(key, next);
    this.raw(next < 0x100 ? [0x71, next] : [0x72, ...u32(next)]);
  }

  tuple(items: number[]): void {
    if (items.length === 0) return this.raw([0x29]);
    if (items.length > 3) this.raw([0x28]);
    for (const item of items) this.int(item);
    this.raw([items.length === 1 ? 0x85 : items.length === 2 ? 0x86 : items.length === 3 ? 0x87 : 0x74]);
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function u32(value: number): number[] {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return [...b];
}

function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

/**
 * data.pkl for tensors stored one per storage, keys "0", "1", ... in order. `orderedDict` writes the
 * top level as torch.save(module.state_dict()) does (collections.OrderedDict with its `_metadata`
 * state); otherwise a plain dict, as transformers' save_pretrained writes its shards.
 */
export function encodeStateDictPickle(tensors: readonly TensorSpec[], orderedDict = false): Buffer {
  const p = new PickleEncoder();
  p.raw([0x80, 0x02]); // PROTO 2
  if (orderedDict) {
    p.global('collections', 'OrderedDict');
    p.raw([0x29, 0x52]); // EMPTY_TUPLE REDUCE
  } else {
    p.raw([0x7d]); // EMPTY_DICT
  }
  tensors.forEach((tensor, index) => {
    const storageClass = STORAGE_CLASS[tensor.dtype];
    if (!storageClass) throw new RangeError(`tensor "${tensor.name}": no torch storage for ${tensor.dtype}`);
    if (index % 1000 === 0) p.raw([0x28]); // MARK: SETITEMS in batches, as pickle does
    p.string(tensor.name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.raw([0x28]); // MARK (args)
    p.raw([0x28]); // MARK (persistent id)
    p.string('storage');
    p.global('torch', storageClass);
    p.string(String(index));
    p.string('cpu');
    p.int(elementCount(tensor.shape));
    p.raw([0x74, 0x51]); // TUPLE BINPERSID
    p.int(0); // storage_offset
    p.tuple([...tensor.shape]);
    p.tuple(contiguousStrides(tensor.shape));
    p.raw([0x89]); // requires_grad False
    p.global('collections', 'OrderedDict');
    p.raw([0x29, 0x52]); // OrderedDict() backward hooks
    p.raw([0x74, 0x52]); // TUPLE REDUCE
    if (index % 1000 === 999 || index === tensors.length - 1) p.raw([0x75]); // SETITEMS
  });
  if (orderedDict) {
    // BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}
    p.raw([0x7d, 0x28]);
    p.string('_metadata');
    p.global('collections', 'OrderedDict');
    p.raw([0x29, 0x52, 0x28]);
    p.string('');
    p.raw([0x7d, 0x28]);
    p.string('version');
    p.int(1);
    p.raw([0x75, 0x75, 0x75, 0x62]); // SETITEMS x3, BUILD
  }
  p.raw([0x2e]); // STOP
  return p.bytes();
}

// ---------------------------------------------------------------------------------------------------
// Zip writer

interface ZipEntryLayout {
  name: string;
  headerOffset: number;
  dataOffset: number;
  size: number;
  /** The local header's extra field (zip64 sizes if needed, then torch's 'FB' alignment padding). */
  localExtra: Buffer;
  crc: number;
}

function localExtraFor(headerOffset: number, nameLength: number, size: number): Buffer {
  const zip64 = size >= U32_MAX ? zip64Extra([size, size]) : Buffer.alloc(0);
  const before = headerOffset + LOCAL_HEADER + nameLength + zip64.length + 4;
  const padding = (ALIGNMENT - (before % ALIGNMENT)) % ALIGNMENT;
  const pad = Buffer.alloc(4 + padding, 0x5a); // 'Z' filler, as torch writes
  pad.writeUInt16LE(0x4246, 0); // 'FB'
  pad.writeUInt16LE(padding, 2);
  return Buffer.concat([zip64, pad]);
}

function zip64Extra(values: number[]): Buffer {
  const b = Buffer.alloc(4 + 8 * values.length);
  b.writeUInt16LE(0x0001, 0);
  b.writeUInt16LE(8 * values.length, 2);
  values.forEach((value, i) => b.writeBigUInt64LE(BigInt(value), 4 + 8 * i));
  return b;
}

function localHeader(entry: ZipEntryLayout): Buffer {
  const name = Buffer.from(entry.name, 'utf8');
  const b = Buffer.alloc(LOCAL_HEADER);
  const big = entry.size >= U32_MAX;
  b.writeUInt32LE(0x04034b50, 0);
  b.writeUInt16LE(big ? 45 : 20, 4); // version needed
  b.writeUInt16LE(0, 6); // flags
  b.writeUInt16LE(0, 8); // stored
  b.writeUInt16LE(0, 10); // time
  b.writeUInt16LE(DOS_DATE, 12);
  b.writeUInt32LE(entry.crc >>> 0, 14);
  b.writeUInt32LE(big ? U32_MAX : entry.size, 18);
  b.writeUInt32LE(big ? U32_MAX : entry.size, 22);
  b.writeUInt16LE(name.length, 26);
  b.writeUInt16LE(entry.localExtra.length, 28);
  return Buffer.concat([b, name, entry.localExtra]);
}

function centralDirectory(entries: readonly ZipEntryLayout[], cdOffset: number): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const bigSize = entry.size >= U32_MAX;
    const bigOffset = entry.headerOffset >= U32_MAX;
    const fields = [...(bigSize ? [entry.size, entry.size] : []), ...(bigOffset ? [entry.headerOffset] : [])];
    const extra = fields.length > 0 ? zip64Extra(fields) : Buffer.alloc(0);
    const b = Buffer.alloc(CENTRAL_HEADER);
    b.writeUInt32LE(0x02014b50, 0);
    b.writeUInt16LE(fields.length > 0 ? 45 : 20, 4); // version made by
    b.writeUInt16LE(fields.length > 0 ? 45 : 20, 6); // version needed
    b.writeUInt16LE(0, 8);
    b.writeUInt16LE(0, 10);
    b.writeUInt16LE(0, 12);
    b.writeUInt16LE(DOS_DATE, 14);
    b.writeUInt32LE(entry.crc >>> 0, 16);
    b.writeUInt32LE(bigSize ? U32_MAX : entry.size, 20);
    b.writeUInt32LE(bigSize ? U32_MAX : entry.size, 24);
    b.writeUInt16LE(name.length, 28);
    b.writeUInt16LE(extra.length, 30);
    // comment length, disk, internal and external attributes stay 0
    b.writeUInt32LE(bigOffset ? U32_MAX : entry.headerOffset, 42);
    parts.push(b, name, extra);
  }
  const cd = Buffer.concat(parts);
  const count = entries.length;
  const needs64 = cdOffset >= U32_MAX || cd.length >= U32_MAX || count >= 0xffff;
  const tail: Buffer[] = [];
  if (needs64) {
    const eocd64 = Buffer.alloc(56);
    eocd64.writeUInt32LE(0x06064b50, 0);
    eocd64.writeBigUInt64LE(44n, 4);
    eocd64.writeUInt16LE(45, 12);
    eocd64.writeUInt16LE(45, 14);
    eocd64.writeBigUInt64LE(BigInt(count), 24);
    eocd64.writeBigUInt64LE(BigInt(count), 32);
    eocd64.writeBigUInt64LE(BigInt(cd.length), 40);
    eocd64.writeBigUInt64LE(BigInt(cdOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(cdOffset + cd.length), 8);
    locator.writeUInt32LE(1, 16);
    tail.push(eocd64, locator);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(Math.min(count, 0xffff), 8);
  eocd.writeUInt16LE(Math.min(count, 0xffff), 10);
  eocd.writeUInt32LE(Math.min(cd.length, U32_MAX), 12);
  eocd.writeUInt32LE(Math.min(cdOffset, U32_MAX), 16);
  return Buffer.concat([cd, ...tail, eocd]);
}

export interface TorchBinWriteOptions {
  /** Top level as collections.OrderedDict with `_metadata` (torch.save(module.state_dict())). */
  orderedDict?: boolean;
  /** Tests: replaces data.pkl by what this returns (to write broken files). */
  editPickle?: (pickle: Buffer) => Buffer;
}

/**
 * Writes one torch.save zip file front to back with the same streaming contract as
 * SafetensorsFileWriter: every shape is known up front, then each tensor's bytes arrive in order through
 * `write`. Each storage's CRC-32 is computed as its bytes pass, and its local header is written once the
 * storage is complete.
 */
export class TorchBinFileWriter {
  private tensorIndex = 0;
  private tensorWritten = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly tensors: readonly TensorSpec[],
    private readonly entries: ZipEntryLayout[],
    private readonly storages: ZipEntryLayout[],
    private nextOffset: number,
  ) {}

  static async create(
    path: string,
    tensors: readonly TensorSpec[],
    options: TorchBinWriteOptions = {},
  ): Promise<TorchBinFileWriter> {
    const seen = new Set<string>();
    for (const tensor of tensors) {
      if (seen.has(tensor.name)) throw new RangeError(`tensor name "${tensor.name}" is repeated`);
      seen.add(tensor.name);
    }
    const encoded = encodeStateDictPickle(tensors, options.orderedDict === true);
    const pickle = options.editPickle ? options.editPickle(encoded) : encoded;
    const entries: ZipEntryLayout[] = [];
    let offset = 0;
    const place = (name: string, size: number): ZipEntryLayout => {
      const full = `${TORCH_BIN_ARCHIVE}/${name}`;
      const localExtra = localExtraFor(offset, Buffer.byteLength(full), size);
      const dataOffset = offset + LOCAL_HEADER + Buffer.byteLength(full) + localExtra.length;
      const entry = { name: full, headerOffset: offset, dataOffset, size, localExtra, crc: 0 };
      entries.push(entry);
      offset = dataOffset + size;
      return entry;
    };
    const fixed: Array<[ZipEntryLayout, Buffer]> = [];
    fixed.push([place('data.pkl', pickle.length), pickle]);
    const byteorder = Buffer.from('little');
    fixed.push([place('byteorder', byteorder.length), byteorder]);
    const storages = tensors.map((tensor, index) => place(`data/${index}`, tensorByteLength(tensor)));
    const handle = await open(path, 'w');
    try {
      for (const [entry, data] of fixed) {
        entry.crc = crc32(data);
        await writeFully(handle, path, Buffer.concat([localHeader(entry), data]), entry.headerOffset);
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
    const writer = new TorchBinFileWriter(path, handle, tensors, entries, storages, offset);
    try {
      for (const empty of writer.skipEmptyStorages()) {
        await writeFully(handle, path, localHeader(empty), empty.headerOffset);
      }
    } catch (error) {
      await writer.abandon();
      throw error;
    }
    return writer;
  }

  get currentTensor(): TensorSpec | undefined {
    return this.tensors[this.tensorIndex];
  }

  /** Appends bytes to the current tensor; a chunk never spans two tensors. */
  async write(chunk: ArrayBufferView): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: write after close`);
    const tensor = this.currentTensor;
    if (!tensor) throw new RangeError(`${this.path}: every tensor is already written`);
    const storage = this.storages[this.tensorIndex];
    if (this.tensorWritten + chunk.byteLength > storage.size) {
      throw new RangeError(
        `${this.path} [${tensor.name}]: chunk overruns the tensor's ${storage.size} bytes`,
      );
    }
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // The CRC runs in call order, before any await, so overlapping writes stay correct.
    storage.crc = crc32(bytes, storage.crc);
    const at = storage.dataOffset + this.tensorWritten;
    this.tensorWritten += chunk.byteLength;
    const finished: ZipEntryLayout[] = [];
    if (this.tensorWritten === storage.size) {
      this.tensorIndex += 1;
      this.tensorWritten = 0;
      finished.push(storage, ...this.skipEmptyStorages());
    }
    await writeFully(this.handle, this.path, bytes, at);
    for (const done of finished) {
      await writeFully(this.handle, this.path, localHeader(done), done.headerOffset);
    }
  }

  /** Writes version, the central directory and its end records, and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    const missing = this.currentTensor;
    if (missing) {
      await this.abandon();
      throw new RangeError(`${this.path} [${missing.name}]: closed before all tensor data was written`);
    }
    this.closed = true;
    try {
      const version = Buffer.from('3\n');
      const localExtra = localExtraFor(
        this.nextOffset,
        `${TORCH_BIN_ARCHIVE}/version`.length,
        version.length,
      );
      const name = `${TORCH_BIN_ARCHIVE}/version`;
      const entry: ZipEntryLayout = {
        name,
        headerOffset: this.nextOffset,
        dataOffset: this.nextOffset + LOCAL_HEADER + name.length + localExtra.length,
        size: version.length,
        localExtra,
        crc: crc32(version),
      };
      this.entries.push(entry);
      await writeFully(
        this.handle,
        this.path,
        Buffer.concat([localHeader(entry), version]),
        entry.headerOffset,
      );
      const cdOffset = entry.dataOffset + entry.size;
      await writeFully(this.handle, this.path, centralDirectory(this.entries, cdOffset), cdOffset);
    } finally {
      await this.handle.close();
    }
  }

  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  /** Zero-byte storages have no data to wait for: they are complete as soon as they are current. */
  private skipEmptyStorages(): ZipEntryLayout[] {
    const skipped: ZipEntryLayout[] = [];
    while (this.currentTensor && this.storages[this.tensorIndex].size === 0) {
      skipped.push(this.storages[this.tensorIndex]);
      this.tensorIndex += 1;
    }
    return skipped;
  }
}

async function writeFully(handle: FileHandle, path: string, bytes: Uint8Array, at: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, at + done);
    if (bytesWritten <= 0) throw new Error(`${path}: short write at byte ${at + done}`);
    done += bytesWritten;
  }
}

/** Writes a small torch.save file from in-memory tensors (tests, tooling). */
export async function writeTorchBin(
  path: string,
  tensors: ReadonlyArray<TensorSpec & { data: ArrayBufferView }>,
  options: TorchBinWriteOptions = {},
): Promise<void> {
  const writer = await TorchBinFileWriter.create(path, tensors, options);
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

export const TORCH_BIN_SINGLE_FILE_NAME = 'pytorch_model.bin';
export const TORCH_BIN_INDEX_FILE_NAME = 'pytorch_model.bin.index.json';

/** transformers' names: model.safetensors -> pytorch_model.bin, model-0000i-of-0000n.safetensors -> pytorch_model-0000i-of-0000n.bin. */
export function torchBinFileName(safetensorsName: string): string {
  return `pytorch_${safetensorsName.replace(/\.safetensors$/, '.bin')}`;
}

// ---------------------------------------------------------------------------------------------------
// Reader: zip central directory + a restricted pickle interpreter (nothing is executed)

/** A structural problem in a torch.save file; names the file and, where it applies, the tensor. */
export class TorchBinFormatError extends Error {
  constructor(
    readonly file: string,
    /** The problem without the file and tensor prefix. */
    readonly detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? ` [${tensor}]` : ''}: ${detail}`);
    this.name = 'TorchBinFormatError';
  }
}

export interface TorchBinTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute offset in the file of the tensor's first byte, and its byte length. */
  dataOffset: number;
  byteLength: number;
}

export interface TorchBinContents {
  path: string;
  fileSize: number;
  tensors: TorchBinTensor[];
}

interface ZipRecord {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

/** The only globals a state_dict pickle may name. */
const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...[...DTYPE_OF_STORAGE.keys()].map((cls) => `torch.${cls}`),
]);

const LEGACY_HINT =
  'in the legacy torch.save format (PyTorch < 1.6, not a zip archive), which is not read; convert it ' +
  'with PyTorch: torch.save(torch.load(path, weights_only=True), path) rewrites it in the zip format, ' +
  'or save the model with save_pretrained(..., safe_serialization=True) for safetensors';

/** Reads a torch.save file's tensor table (names, dtypes, shapes, where each tensor's bytes lie). */
export async function readTorchBin(path: string): Promise<TorchBinContents> {
  const handle = await open(path, 'r');
  try {
    const { size: fileSize } = await handle.stat();
    const read = async (position: number, length: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead !== length)
        throw new TorchBinFormatError(path, `truncated: cannot read ${length} bytes at ${position}`);
      return buffer;
    };
    const head = await read(0, Math.min(4, fileSize));
    if (head.length < 4 || head.readUInt32LE(0) !== 0x04034b50) {
      if (head[0] === 0x80) throw new TorchBinFormatError(path, `is ${LEGACY_HINT}`);
      throw new TorchBinFormatError(path, 'is not a zip archive (torch.save format expected)');
    }
    const records = await readCentralDirectory(path, fileSize, read);
    const pickleRecord = [...records.values()].find((record) => /^[^/]+\/data\.pkl$/.test(record.name));
    if (!pickleRecord)
      throw new TorchBinFormatError(path, 'has no <archive>/data.pkl record: not a torch.save file');
    const prefix = pickleRecord.name.slice(0, -'data.pkl'.length);
    const dataOf = async (record: ZipRecord): Promise<number> => {
      if (record.method !== 0) {
        throw new TorchBinFormatError(
          path,
          `record ${record.name} is compressed (method ${record.method}); torch.save stores records uncompressed`,
        );
      }
      const local = await read(record.headerOffset, 30);
      if (local.readUInt32LE(0) !== 0x04034b50) {
        throw new TorchBinFormatError(
          path,
          `record ${record.name}: no local header at ${record.headerOffset}`,
        );
      }
      const dataOffset = record.headerOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      if (dataOffset + record.size > fileSize) {
        throw new TorchBinFormatError(path, `truncated: record ${record.name} ends past the end of the file`);
      }
      return dataOffset;
    };
    const pickleBytes = await read(await dataOf(pickleRecord), pickleRecord.size);
    const stateDict = unpickleStateDict(path, pickleBytes);
    const tensors: TorchBinTensor[] = [];
    for (const [name, value] of stateDict) {
      if (!(value instanceof TensorRef)) {
        throw new TorchBinFormatError(
          path,
          `value is ${describe(value)}, not a tensor (only tensors are read)`,
          name,
        );
      }
      const record = records.get(`${prefix}data/${value.storage.key}`);
      if (!record)
        throw new TorchBinFormatError(
          path,
          `storage record ${prefix}data/${value.storage.key} is missing`,
          name,
        );
      const element = bytesPerElement(value.storage.dtype);
      if (record.size < value.storage.numel * element) {
        throw new TorchBinFormatError(
          path,
          `storage ${value.storage.key} holds ${record.size} bytes, fewer than its ${value.storage.numel} elements need`,
          name,
        );
      }
      const numel = elementCount(value.shape);
      const expected = contiguousStrides(value.shape);
      if (numel > 1 && value.stride.some((stride, d) => value.shape[d] > 1 && stride !== expected[d])) {
        throw new TorchBinFormatError(
          path,
          `tensor is not contiguous (stride [${value.stride.join(', ')}] for shape [${value.shape.join(', ')}])`,
          name,
        );
      }
      if (value.offset + numel > value.storage.numel) {
        throw new TorchBinFormatError(
          path,
          `elements [${value.offset}, ${value.offset + numel}) lie outside storage ${value.storage.key} of ${value.storage.numel}`,
          name,
        );
      }
      tensors.push({
        name,
        dtype: value.storage.dtype,
        shape: value.shape,
        dataOffset: (await dataOf(record)) + value.offset * element,
        byteLength: numel * element,
      });
    }
    return { path, fileSize, tensors };
  } finally {
    await handle.close();
  }
}

async function readCentralDirectory(
  path: string,
  fileSize: number,
  read: (position: number, length: number) => Promise<Buffer>,
): Promise<Map<string, ZipRecord>> {
  const tailLength = Math.min(fileSize, 22 + 0xffff);
  const tail = await read(fileSize - tailLength, tailLength);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0)
    throw new TorchBinFormatError(
      path,
      'truncated or corrupt zip archive: no end-of-central-directory record',
    );
  const eocdOffset = fileSize - tailLength + eocd;
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
    if (eocdOffset < 20) throw new TorchBinFormatError(path, 'corrupt zip64 archive: no zip64 locator');
    const locator = await read(eocdOffset - 20, 20);
    if (locator.readUInt32LE(0) !== 0x07064b50)
      throw new TorchBinFormatError(path, 'corrupt zip64 archive: no zip64 locator');
    const at = Number(locator.readBigUInt64LE(8));
    if (at + 56 > eocdOffset)
      throw new TorchBinFormatError(path, 'corrupt zip64 archive: bad zip64 end record offset');
    const record = await read(at, 56);
    if (record.readUInt32LE(0) !== 0x06064b50)
      throw new TorchBinFormatError(path, 'corrupt zip64 archive: no zip64 end record');
    count = Number(record.readBigUInt64LE(32));
    cdSize = Number(record.readBigUInt64LE(40));
    cdOffset = Number(record.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > eocdOffset)
    throw new TorchBinFormatError(path, 'corrupt zip archive: central directory runs past its end record');
  const cd = await read(cdOffset, cdSize);
  const records = new Map<string, ZipRecord>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cd.length || cd.readUInt32LE(at) !== 0x02014b50) {
      throw new TorchBinFormatError(path, `corrupt zip archive: central directory entry ${i} is damaged`);
    }
    const nameLength = cd.readUInt16LE(at + 28);
    const extraLength = cd.readUInt16LE(at + 30);
    const commentLength = cd.readUInt16LE(at + 32);
    const name = cd.toString('utf8', at + 46, at + 46 + nameLength);
    const record: ZipRecord = {
      name,
      method: cd.readUInt16LE(at + 10),
      compressedSize: cd.readUInt32LE(at + 20),
      size: cd.readUInt32LE(at + 24),
      headerOffset: cd.readUInt32LE(at + 42),
    };
    // zip64 extra: the fields that overflowed, in this order
    const extra = cd.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength);
    for (let e = 0; e + 4 <= extra.length;) {
      const id = extra.readUInt16LE(e);
      const length = extra.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let f = e + 4;
        const next = (): number => {
          if (f + 8 > e + 4 + length)
            throw new TorchBinFormatError(path, `corrupt zip64 extra field for ${name}`);
          const value = Number(extra.readBigUInt64LE(f));
          f += 8;
          return value;
        };
        if (record.size === U32_MAX) record.size = next();
        if (record.compressedSize === U32_MAX) record.compressedSize = next();
        if (record.headerOffset === U32_MAX) record.headerOffset = next();
      }
      e += 4 + length;
    }
    if (record.method === 0 && record.compressedSize !== record.size) {
      throw new TorchBinFormatError(path, `corrupt zip archive: stored record ${name} has two sizes`);
    }
    records.set(name, record);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return records;
}

class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDtype,
    readonly numel: number,
  ) {}
}

class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

class GlobalRef {
  constructor(readonly name: string) {}
}

class Mark {}

/** A dict built by the pickle (insertion-ordered, string keys only are kept for the state_dict). */
class PickleDict extends Map<PickleValue, PickleValue> {}

type PickleValue =
  | null
  | boolean
  | number
  | string
  | PickleValue[]
  | PickleTuple
  | PickleDict
  | GlobalRef
  | StorageRef
  | TensorRef;

/** A pickled tuple (a pickled list is a plain array). */
class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

function describe(value: PickleValue | Mark): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return 'a bool';
  if (typeof value === 'number') return 'a number';
  if (typeof value === 'string') return 'a string';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof PickleTuple) return 'a tuple';
  if (value instanceof PickleDict) return 'a dict';
  if (value instanceof StorageRef) return 'a storage';
  if (value instanceof TensorRef) return 'a tensor';
  if (value instanceof GlobalRef) return value.name;
  return 'a mark';
}

/**
 * Interprets data.pkl with only the opcodes (protocols 2 to 5) a state_dict's pickle uses. Globals
 * outside ALLOWED_GLOBALS, and any other opcode, are refused with the byte offset named.
 */
export function unpickleStateDict(path: string, bytes: Buffer): Map<string, PickleValue> {
  const stack: Array<PickleValue | Mark> = [];
  const memo = new Map<number, PickleValue>();
  let at = 0;
  const fail = (message: string): never => {
    throw new TorchBinFormatError(path, `data.pkl: ${message}`);
  };
  const need = (n: number): number => {
    if (at + n > bytes.length) fail(`ends early at byte ${at}`);
    const start = at;
    at += n;
    return start;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) fail(`unterminated GLOBAL at byte ${at}`);
    const text = bytes.toString('latin1', at, end);
    at = end + 1;
    return text;
  };
  const pop = (): PickleValue => {
    const value = stack.pop();
    if (value === undefined || value instanceof Mark) fail(`stack underflow at byte ${at}`);
    return value as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && !(stack[i] instanceof Mark)) i--;
    if (i < 0) fail(`no MARK before byte ${at}`);
    const items = stack.splice(i + 1) as PickleValue[];
    stack.pop();
    return items;
  };
  const top = (): PickleValue => {
    const value = stack[stack.length - 1];
    if (value === undefined || value instanceof Mark) fail(`stack underflow at byte ${at}`);
    return value as PickleValue;
  };
  const int = (value: PickleValue, what: string): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value))
      fail(`${what} is ${describe(value)}, not an integer`);
    return value as number;
  };
  const ints = (value: PickleValue, what: string): number[] => {
    if (!(value instanceof PickleTuple)) fail(`${what} is ${describe(value)}, not a tuple`);
    return (value as PickleTuple).items.map((item) => int(item, what));
  };
  const setItems = (dict: PickleValue, items: PickleValue[]): void => {
    if (!(dict instanceof PickleDict)) fail(`SETITEMS on ${describe(dict)} at byte ${at}`);
    for (let i = 0; i + 1 < items.length; i += 2) (dict as PickleDict).set(items[i], items[i + 1]);
  };
  const reduce = (callable: PickleValue, args: PickleValue): PickleValue => {
    if (!(callable instanceof GlobalRef) || !(args instanceof PickleTuple)) {
      return fail(`REDUCE of ${describe(callable)} at byte ${at}`);
    }
    const a = args.items;
    switch (callable.name) {
      case 'collections.OrderedDict':
        if (a.length !== 0) fail('collections.OrderedDict called with arguments');
        return new PickleDict();
      case 'torch._utils._rebuild_tensor_v2': {
        if (a.length < 4 || !(a[0] instanceof StorageRef)) fail('_rebuild_tensor_v2 without a storage');
        const shape = ints(a[2], 'tensor size');
        const stride = ints(a[3], 'tensor stride');
        if (shape.length !== stride.length || shape.some((d) => d < 0)) fail('bad tensor size or stride');
        return new TensorRef(a[0] as StorageRef, int(a[1], 'storage offset'), shape, stride);
      }
      case 'torch._utils._rebuild_parameter':
        if (a.length < 1 || !(a[0] instanceof TensorRef)) fail('_rebuild_parameter without a tensor');
        return a[0];
      default:
        return fail(`${callable.name} cannot be called`);
    }
  };
  for (;;) {
    const opcode = bytes[need(1)];
    switch (opcode) {
      case 0x80: // PROTO
        need(1);
        break;
      case 0x95: // FRAME (protocol 4): the length is advisory
        need(8);
        break;
      case 0x2e: {
        // STOP
        const result = pop();
        if (!(result instanceof PickleDict)) fail(`top level is ${describe(result)}, not a dict of tensors`);
        const out = new Map<string, PickleValue>();
        for (const [key, value] of result as PickleDict) {
          if (typeof key !== 'string') fail(`a key is ${describe(key)}, not a string`);
          out.set(key as string, value);
        }
        return out;
      }
      case 0x28: // MARK
        stack.push(new Mark());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PickleDict());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PickleTuple(popMark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        // TUPLE1..3
        const n = opcode - 0x84;
        const items: PickleValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PickleTuple(items));
        break;
      }
      case 0x58: {
        // BINUNICODE
        const n = bytes.readUInt32LE(need(4));
        stack.push(bytes.toString('utf8', need(n), at));
        break;
      }
      case 0x8c: {
        // SHORT_BINUNICODE
        const n = bytes[need(1)];
        stack.push(bytes.toString('utf8', need(n), at));
        break;
      }
      case 0x8d: {
        // BINUNICODE8
        const n = Number(bytes.readBigUInt64LE(need(8)));
        stack.push(bytes.toString('utf8', need(n), at));
        break;
      }
      case 0x4b: // BININT1
        stack.push(bytes[need(1)]);
        break;
      case 0x4d: // BININT2
        stack.push(bytes.readUInt16LE(need(2)));
        break;
      case 0x4a: // BININT
        stack.push(bytes.readInt32LE(need(4)));
        break;
      case 0x8a: {
        // LONG1
        const n = bytes[need(1)];
        const start = need(n);
        let value = 0n;
        for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[start + i]);
        if (n > 0 && bytes[start + n - 1] & 0x80) value -= 1n << BigInt(8 * n);
        if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER))
          fail('integer out of range');
        stack.push(Number(value));
        break;
      }
      case 0x47: // BINFLOAT
        stack.push(bytes.readDoubleBE(need(8)));
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x63: {
        // GLOBAL
        const name = `${line()}.${line()}`;
        if (!ALLOWED_GLOBALS.has(name))
          fail(`refuses the global ${name} (only tensors of a state_dict are read)`);
        stack.push(new GlobalRef(name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const qualname = pop();
        const module = pop();
        const name = `${String(module)}.${String(qualname)}`;
        if (typeof module !== 'string' || typeof qualname !== 'string' || !ALLOWED_GLOBALS.has(name)) {
          fail(`refuses the global ${name} (only tensors of a state_dict are read)`);
        }
        stack.push(new GlobalRef(name));
        break;
      }
      case 0x71: // BINPUT
        memo.set(bytes[need(1)], top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(bytes.readUInt32LE(need(4)), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const slot = opcode === 0x68 ? bytes[need(1)] : bytes.readUInt32LE(need(4));
        if (!memo.has(slot)) fail(`memo slot ${slot} is empty`);
        stack.push(memo.get(slot) as PickleValue);
        break;
      }
      case 0x51: {
        // BINPERSID: ('storage', torch.<T>Storage, key, location, numel)
        const pid = pop();
        const items = pid instanceof PickleTuple ? pid.items : [];
        const cls = items[1];
        if (
          items.length < 5 ||
          items[0] !== 'storage' ||
          !(cls instanceof GlobalRef) ||
          typeof items[2] !== 'string'
        ) {
          fail(`unexpected persistent id ${describe(pid)}`);
        }
        const dtype = DTYPE_OF_STORAGE.get((cls as GlobalRef).name.replace(/^torch\./, ''));
        if (!dtype) fail(`unsupported storage type ${(cls as GlobalRef).name}`);
        stack.push(
          new StorageRef(items[2] as string, dtype as SafetensorsDtype, int(items[4], 'storage size')),
        );
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(reduce(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD: only a dict's state (OrderedDict's `_metadata`), which is dropped
        const state = pop();
        if (!(top() instanceof PickleDict) || !(state instanceof PickleDict || state === null)) {
          fail(`BUILD of ${describe(top())} at byte ${at}`);
        }
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        // APPEND
        const value = pop();
        const list = top();
        if (!Array.isArray(list)) fail(`APPEND to ${describe(list)}`);
        (list as PickleValue[]).push(value);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail(`APPENDS to ${describe(list)}`);
        (list as PickleValue[]).push(...items);
        break;
      }
      default:
        fail(`unsupported opcode 0x${opcode.toString(16).padStart(2, '0')} at byte ${at - 1}`);
    }
  }
}

/** Reads every tensor of a torch.save file with its bytes (tests and tooling; small files only). */
export async function readTorchBinTensors(path: string): Promise<Array<TensorSpec & { data: Uint8Array }>> {
  const contents = await readTorchBin(path);
  const file = await open(path, 'r');
  try {
    const out: Array<TensorSpec & { data: Uint8Array }> = [];
    for (const tensor of contents.tensors) {
      const data = Buffer.alloc(tensor.byteLength);
      await file.read(data, 0, tensor.byteLength, tensor.dataOffset);
      out.push({ name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, data });
    }
    return out;
  } finally {
    await file.close();
  }
}
