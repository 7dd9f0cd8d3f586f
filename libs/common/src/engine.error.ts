export type EngineErrorCode =
  | 'ENGINE_DISPOSED'
  | 'ENGINE_NOT_LOADED'
  | 'INVALID_ARGUMENT'
  | 'MODEL_LOAD_FAILED'
  | 'OUT_OF_MEMORY'
  | 'DEVICE_FAILED'
  | 'INTERNAL';

/** A domain error from the engine; the HTTP layer maps codes to statuses. */
export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}
