/**
 * Element types a checkpoint can be written in, and the bit conversions the generator needs.
 * Safetensors stores little-endian data; every platform we run on (x86-64, arm64) is little-endian, so
 * typed-array bytes are written as they are.
 */

/** The `--dtype` names users type. */
export type CheckpointDtype = 'bf16' | 'f16' | 'f32';

/** The dtype strings of the safetensors header that we read and write. */
export type SafetensorsDtype = 'BF16' | 'F16' | 'F32' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const CHECKPOINT_DTYPES: readonly CheckpointDtype[] = ['bf16', 'f16', 'f32'];

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = {
  BF16: 2,
  F16: 2,
  F32: 4,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(BYTES_PER_ELEMENT, value);
}

export function bytesPerElement(dtype: SafetensorsDtype): number {
  return BYTES_PER_ELEMENT[dtype];
}

export function toSafetensorsDtype(dtype: CheckpointDtype): SafetensorsDtype {
  return dtype === 'bf16' ? 'BF16' : dtype === 'f16' ? 'F16' : 'F32';
}

/** The `torch_dtype` string of config.json. */
export function toTorchDtype(dtype: CheckpointDtype | SafetensorsDtype): string {
  switch (dtype) {
    case 'bf16':
    case 'BF16':
      return 'bfloat16';
    case 'f16':
    case 'F16':
      return 'float16';
    default:
      return 'float32';
  }
}

export function parseCheckpointDtype(value: string): CheckpointDtype {
  const normalised = value.trim().toLowerCase();
  const aliases: Record<string, CheckpointDtype> = {
    bf16: 'bf16',
    bfloat16: 'bf16',
    f16: 'f16',
    fp16: 'f16',
    float16: 'f16',
    f32: 'f32',
    fp32: 'f32',
    float32: 'f32',
  };
  const dtype = aliases[normalised];
  if (!dtype) throw new RangeError(`unknown dtype "${value}": use one of ${CHECKPOINT_DTYPES.join(', ')}`);
  return dtype;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float64 -> float32 -> bfloat16 bits, round to nearest even (finite inputs). */
export function toBfloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000) return (bits >>> 16) | ((bits & 0xffff) !== 0 ? 0x40 : 0);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bfloat16BitsToNumber(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** float64 -> float32 -> IEEE half bits, round to nearest even, subnormals and overflow handled. */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const halfway = 1 << (shift - 1);
    const remainder = mantissa & ((1 << shift) - 1);
    let half = mantissa >>> shift;
    if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half += 1;
  return sign | half;
}

export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Decodes little-endian element bytes into numbers (for tests and small tensors). */
export function decodeElements(dtype: SafetensorsDtype, bytes: Uint8Array): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytesPerElement(dtype);
  const out = new Float64Array(Math.floor(bytes.byteLength / size));
  for (let i = 0; i < out.length; i++) {
    const at = i * size;
    switch (dtype) {
      case 'BF16':
        out[i] = bfloat16BitsToNumber(view.getUint16(at, true));
        break;
      case 'F16':
        out[i] = float16BitsToNumber(view.getUint16(at, true));
        break;
      case 'F32':
        out[i] = view.getFloat32(at, true);
        break;
      case 'F64':
        out[i] = view.getFloat64(at, true);
        break;
      default:
        throw new RangeError(`decodeElements does not support ${dtype}`);
    }
  }
  return out;
}
