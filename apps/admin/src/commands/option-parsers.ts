/** Strict parsers for command-line values: a typo fails loudly instead of becoming NaN. */

export function parseInteger(name: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(value.trim())) throw new Error(`${name} must be an integer (got "${value}")`);
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new Error(`${name} must be between ${min} and ${max} (got ${value})`);
  }
  return parsed;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** `4GiB`, `500MB`, `123456` -> bytes. */
export function parseByteSize(name: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined)
    throw new Error(`${name} must be a size like 4GiB or 500MB (got "${value}")`);
  const bytes = Math.floor(Number(match[1]) * unit);
  if (bytes <= 0) throw new Error(`${name} must be positive (got "${value}")`);
  return bytes;
}

export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  const normalised = value.trim().toLowerCase() as T;
  if (!choices.includes(normalised))
    throw new Error(`${name} must be one of ${choices.join(', ')} (got "${value}")`);
  return normalised;
}
