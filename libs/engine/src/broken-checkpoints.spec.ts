import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectCheckpoint } from '@app/checkpoint/checkpoint-inspector';
import {
  BROKEN_CHECKPOINTS,
  BrokenCheckpointCase,
  writeBrokenCheckpoint,
  writeBrokenCheckpointSources,
} from '@app/checkpoint/testing/broken-checkpoints';
import { EngineError } from './engine.port';
import { NativeEngine } from './native-engine';

/**
 * The one table of broken checkpoints (libs/checkpoint/src/testing/broken-checkpoints.ts) through
 * both validators: `model inspect`'s TypeScript inspector and the C++ loader behind the addon's
 * load(). A case one of them lets through, or names differently, fails here.
 */
describe('broken checkpoints, inspector and engine alike', () => {
  let root: string;
  const dirs = new Map<BrokenCheckpointCase, string>();

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'broken-checkpoints-'));
    const sources = await writeBrokenCheckpointSources(root);
    for (const [index, brokenCase] of BROKEN_CHECKPOINTS.entries()) {
      dirs.set(brokenCase, await writeBrokenCheckpoint(brokenCase, sources, join(root, `case-${index}`)));
    }
  }, 60_000);
  afterAll(() => rm(root, { recursive: true, force: true }));

  describe.each(BROKEN_CHECKPOINTS.map((brokenCase) => [brokenCase.name, brokenCase] as const))(
    '%s',
    (_name, brokenCase) => {
      it(`the inspector reports an error in ${brokenCase.file}`, async () => {
        const report = await inspectCheckpoint(dirs.get(brokenCase)!);
        expect(report.ok).toBe(false);
        expect(report.issues).toContainEqual(
          expect.objectContaining({
            severity: 'error',
            file: brokenCase.inspector.file ?? brokenCase.file,
            message: expect.stringMatching(brokenCase.inspector.message),
            ...(brokenCase.inspector.tensor ? { tensor: brokenCase.inspector.tensor } : {}),
          }),
        );
      });

      it(`the engine refuses to load it, naming ${brokenCase.file}`, async () => {
        const engine = new NativeEngine();
        try {
          const error = await engine
            .load({
              modelPath: dirs.get(brokenCase)!,
              device: 'cpu',
              dtype: 'float32',
              deviceIds: [],
              tensorParallelSize: 1,
            })
            .then(
              () => undefined,
              (e: unknown) => e,
            );
          expect(error).toBeInstanceOf(EngineError);
          expect(error).toMatchObject({
            code: 'MODEL_LOAD_FAILED',
            message: expect.stringMatching(brokenCase.engine),
          });
          expect((error as EngineError).message).toContain(brokenCase.file);
        } finally {
          await engine.dispose();
        }
      });
    },
  );
});
