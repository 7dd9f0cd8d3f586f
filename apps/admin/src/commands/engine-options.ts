import { EngineOverrides } from '../engine/engine-session';
import { parseChoice, parseInteger } from './option-parsers';

/** Parsers for the options every engine-loading command takes (they override the environment). */
export const engineOptionParsers = {
  modelPath: (value: string): string => value,
  device: (value: string): 'cpu' | 'cuda' => parseChoice('--device', value, ['cpu', 'cuda'] as const),
  dtype: (value: string): 'float32' | 'bfloat16' | 'float16' =>
    parseChoice('--dtype', value, ['float32', 'bfloat16', 'float16'] as const),
  tp: (value: string): number => parseInteger('--tp', value, 1, 8),
};

export interface EngineCommandOptions {
  modelPath?: string;
  device?: 'cpu' | 'cuda';
  dtype?: 'float32' | 'bfloat16' | 'float16';
  tp?: number;
  addon?: string;
}

export function overridesFrom(options: EngineCommandOptions): EngineOverrides {
  return {
    modelPath: options.modelPath,
    device: options.device,
    dtype: options.dtype,
    tensorParallelSize: options.tp,
    addonPath: options.addon,
  };
}
