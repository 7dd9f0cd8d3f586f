import { Injectable } from '@nestjs/common';
import { NativeEngine } from './native-engine';

/**
 * Writes an embedding row as JSON text for the response body, outside the engine port: the port
 * computes rows, this formats them. The base class has no formatter (undefined: the response
 * builder falls back to JSON.stringify).
 */
@Injectable()
export class FloatArrayFormatter {
  format(values: Float32Array): string | undefined {
    void values;
    return undefined;
  }
}

/**
 * The addon's formatter (C++ `std::to_chars`): the shortest digits that read back as the same
 * float32 ("0.0023064255", as OpenAI writes embeddings), NaN/Infinity as `null`. A 2560-float row is
 * written in ~0.3x the time of JSON.stringify, 0.59x the bytes (docs/benchmarks.md,
 * bench/response-json.ts), on the event loop of every float response.
 */
export class NativeFloatArrayFormatter extends FloatArrayFormatter {
  constructor(private readonly native: NativeEngine) {
    super();
  }

  override format(values: Float32Array): string {
    return this.native.floatArrayJson(values);
  }
}
