import type { EnginePort } from './engine.port';

/**
 * Makes the engine of each served model (one per MODELS entry, in order): the native addon's, or the
 * engines a caller gives (HTTP-layer tests, the server-overhead bench). Each is created unloaded; its
 * model's ModelLifecycle loads and disposes it.
 */
export abstract class EngineFactory {
  abstract create(index: number): EnginePort;
}

/** The given engines, one per served model in order (tests: `engine` for the first). */
export class GivenEngines extends EngineFactory {
  constructor(private readonly engines: EnginePort[]) {
    super();
  }

  create(index: number): EnginePort {
    const engine = this.engines[index];
    if (!engine) throw new Error(`no engine was given for served model ${index}`);
    return engine;
  }
}
