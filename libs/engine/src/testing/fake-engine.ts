import {
  EngineError,
  EngineHead,
  EngineInfo,
  EngineLoadOptions,
  EnginePort,
  PackedBatch,
} from '../engine.port';

/**
 * When a FakeEngine's embed() calls finish: in the call itself, on a 1 ms timer (so other work can
 * queue up meanwhile), or only when the test settles them through `calls`.
 */
export type FakeEngineCompletion = 'immediate' | 'timer' | 'manual';

/** One embed() call, as the test sees it. */
export interface FakeEngineCall {
  batch: PackedBatch;
  /** Finishes the call: rows for its batch as it is now, or the error `failWhen` picks. */
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface FakeEngineOptions {
  /**
   * Fields over the default description: a float32 CPU model, hidden size 64, one replica, head
   * 'embedding'. With a score head (here or in load()'s options) outputDimension is 1.
   */
  info?: Partial<EngineInfo>;
  /**
   * The row of one sequence, `dimensions` floats; default: a unit vector derived from its token ids,
   * or with a score head one raw score derived from them (see `fakeScore`).
   */
  row?: (tokenIds: Int32Array, dimensions: number, batch: PackedBatch) => ArrayLike<number>;
  /** Default 'immediate'. */
  completion?: FakeEngineCompletion;
  /** load() waits for releaseLoad(). */
  holdLoad?: boolean;
}

const DEFAULT_INFO: EngineInfo = {
  modelPath: '/fake',
  modelType: 'qwen3',
  hiddenSize: 64,
  outputDimension: 64,
  head: 'embedding',
  numLayers: 1,
  numAttentionHeads: 2,
  numKeyValueHeads: 1,
  headDim: 32,
  intermediateSize: 128,
  vocabSize: 151665,
  maxPositionEmbeddings: 64,
  parameters: 1,
  device: 'cpu',
  dtype: 'float32',
  tensorParallelSize: 1,
  replicas: 1,
  cudaGraphMaxTokens: 0,
  peerAllReduce: false,
  devices: [{ index: -1, name: 'cpu', totalMemoryBytes: 1, usedMemoryBytes: 1, replica: 0, rank: 0 }],
};

/** Equal token ids give equal rows, and the row has norm 1, as the engine's do. */
function unitRowFromIds(tokenIds: Int32Array, dimensions: number): number[] {
  const row = Array.from({ length: dimensions }, (_, k) => Math.sin(tokenIds.length + tokenIds[0] * (k + 1)));
  const length = Math.hypot(...row);
  return row.map((value) => value / length);
}

/**
 * A score head's raw output for one sequence: deterministic in its token ids (order included), spread
 * over [-4, 4] so that sigmoid(raw) covers most of (0, 1) and different texts rank differently.
 */
export function fakeScore(tokenIds: ArrayLike<number>): number {
  let hash = 2166136261; // FNV-1a over the ids' bytes
  for (let i = 0; i < tokenIds.length; i += 1) {
    for (let shift = 0; shift < 32; shift += 8) {
      hash ^= (tokenIds[i] >>> shift) & 0xff;
      hash = Math.imul(hash, 16777619);
    }
  }
  return ((hash >>> 0) / 0xffffffff) * 8 - 4;
}

function rowFor(head: EngineHead): NonNullable<FakeEngineOptions['row']> {
  return head === 'embedding' ? unitRowFromIds : (tokenIds) => [fakeScore(tokenIds)];
}

/**
 * Stands in for the addon where a unit test needs the layers above the engine on their own (the
 * end-to-end tests run the real engine). It records every load and batch, answers with rows made
 * from the token ids, and lets a test hold loading, hold batches, fail them, or report a lost device.
 */
export class FakeEngine extends EnginePort {
  readonly calls: FakeEngineCall[] = [];
  loadOptions?: EngineLoadOptions;
  completion: FakeEngineCompletion;
  /** Picks the batches that fail, when they finish. */
  failWhen?: (batch: PackedBatch) => EngineError | undefined;
  /** Set to make health() report the engine failed, with this reason. */
  healthFailure?: string;
  /** Batches started and not finished, now and at most. */
  running = 0;
  maxRunning = 0;

  private description: EngineInfo;
  private readonly customRow?: FakeEngineOptions['row'];
  private readonly loadReleased: Promise<void>;
  private release: () => void = () => undefined;

  constructor(options: FakeEngineOptions = {}) {
    super();
    this.description = descriptionOf(options.info ?? {});
    this.customRow = options.row;
    this.completion = options.completion ?? 'immediate';
    this.loadReleased = options.holdLoad
      ? new Promise<void>((resolve) => (this.release = resolve))
      : Promise.resolve();
  }

  /** Every batch embed() was called with, in order. */
  get batches(): PackedBatch[] {
    return this.calls.map((call) => call.batch);
  }

  /** Lets a held load() finish. */
  releaseLoad(): void {
    this.release();
  }

  load(options: EngineLoadOptions): Promise<EngineInfo> {
    this.loadOptions = options;
    if (options.head === 'yes-no' && !options.yesNoTokenIds) {
      return Promise.reject(new EngineError('INVALID_ARGUMENT', "head 'yes-no' needs yesNoTokenIds"));
    }
    // The head loaded is the head described, as the engine reports it.
    if (options.head !== undefined && options.head !== this.description.head) {
      const { outputDimension: _, ...rest } = this.description;
      this.description = descriptionOf({ ...rest, head: options.head });
    }
    return this.loadReleased.then(() => this.info());
  }

  info(): EngineInfo {
    return structuredClone(this.description);
  }

  health(): { ok: boolean; reason?: string } {
    return this.healthFailure === undefined ? { ok: true } : { ok: false, reason: this.healthFailure };
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }

  embed(batch: PackedBatch): Promise<Float32Array> {
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise<Float32Array>((resolve, reject) => {
      const fail = (error: unknown): void => {
        this.running -= 1;
        reject(error);
      };
      const finish = (): void => {
        let rows: Float32Array;
        try {
          const failure = this.failWhen?.(batch);
          if (failure) {
            fail(failure);
            return;
          }
          rows = this.rowsFor(batch);
        } catch (error) {
          fail(error);
          return;
        }
        this.running -= 1;
        resolve(rows);
      };
      this.calls.push({ batch, resolve: finish, reject: fail });
      if (this.completion === 'immediate') finish();
      else if (this.completion === 'timer') setTimeout(finish, 1);
    });
  }

  /** Sequences of call `index`, as arrays of token ids. */
  sequences(index: number): number[][] {
    return sequencesOf(this.calls[index].batch).map((tokens) => Array.from(tokens));
  }

  private rowsFor(batch: PackedBatch): Float32Array {
    if (this.description.head !== 'embedding' && batch.dimensions.some((d) => d !== 1)) {
      throw new EngineError(
        'INVALID_ARGUMENT',
        'a score head answers one value per sequence: dimensions must be 1',
      );
    }
    const rows = new Float32Array(batch.dimensions.reduce((sum, d) => sum + d, 0));
    const row = this.customRow ?? rowFor(this.description.head);
    let offset = 0;
    sequencesOf(batch).forEach((tokens, j) => {
      rows.set(row(tokens, batch.dimensions[j], batch), offset);
      offset += batch.dimensions[j];
    });
    return rows;
  }
}

/**
 * The description of a fake given `info`: one given only a hidden size has rows of that size, as a
 * model without Dense layers; one with a score head has rows of one float.
 */
function descriptionOf(info: Partial<EngineInfo>): EngineInfo {
  const head = info.head ?? DEFAULT_INFO.head;
  const outputDimension =
    info.outputDimension ?? (head === 'embedding' ? (info.hiddenSize ?? DEFAULT_INFO.outputDimension) : 1);
  return { ...DEFAULT_INFO, ...info, head, outputDimension };
}

function sequencesOf(batch: PackedBatch): Int32Array[] {
  const out: Int32Array[] = [];
  for (let j = 0; j + 1 < batch.cuSeqlens.length; j += 1) {
    out.push(batch.tokenIds.subarray(batch.cuSeqlens[j], batch.cuSeqlens[j + 1]));
  }
  return out;
}
