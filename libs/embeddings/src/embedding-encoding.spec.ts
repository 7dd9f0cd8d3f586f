import { fromBase64, toBase64 } from './embedding-encoding';

describe(toBase64.name, () => {
  it('writes little-endian float32 bytes', () => {
    expect(toBase64(Float32Array.from([1, -2]))).toBe(
      Buffer.from([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]).toString('base64'),
    );
  });

  it('encodes only the row, not the whole buffer it views', () => {
    const rows = Float32Array.from([1, 2, 3, 4]);
    const row = rows.subarray(2, 4);
    expect(Array.from(fromBase64(toBase64(row)))).toEqual([3, 4]);
  });

  it('round-trips exactly', () => {
    const row = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) / 7);
    expect(fromBase64(toBase64(row))).toEqual(row);
  });
});
