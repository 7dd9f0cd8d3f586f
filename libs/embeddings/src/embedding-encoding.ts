import { endianness } from 'node:os';

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** base64 of the row as little-endian float32 bytes (what the OpenAI SDKs decode). */
export function toBase64(row: Float32Array): string {
  if (LITTLE_ENDIAN_HOST) {
    return Buffer.from(row.buffer, row.byteOffset, row.byteLength).toString('base64');
  }
  const bytes = Buffer.alloc(row.byteLength);
  row.forEach((value, index) => bytes.writeFloatLE(value, index * 4));
  return bytes.toString('base64');
}

export function fromBase64(encoded: string): Float32Array {
  const bytes = Buffer.from(encoded, 'base64');
  const row = new Float32Array(bytes.length / 4);
  for (let index = 0; index < row.length; index += 1) {
    row[index] = bytes.readFloatLE(index * 4);
  }
  return row;
}
