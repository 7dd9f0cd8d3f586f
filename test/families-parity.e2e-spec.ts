/**
 * Issue 18, criterion 4: every model family and pooling mode against sentence-transformers. Each
 * family fixture (test/fixtures/parity-<name>.json, written on the GPU host by the families step of
 * scripts/device/run.sh with scripts/reference/st_reference.py in fp32) names the `admin checkpoint
 * generate` arguments that made its checkpoint; the same checkpoint is generated here (the weights'
 * sha256 must match), served by the real app on the CPU in fp32, and asked through the OpenAI SDK for
 * every text at every Matryoshka size with the text's prompt: the inputs and token ids must be the
 * ones sentence-transformers fed the model and every vector within cosine 0.99999 of its own (and of
 * its length too where the model has no Normalize).
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import { ModelRegistry } from '@app/embeddings/model-registry';
import type { RunningApp } from '../apps/api/src/app.factory';
import {
  FLOAT32_NORM_TOLERANCE,
  FLOAT32_THRESHOLD,
  isFamilyFixture,
  ParityFixture,
  ParityFixtureItem,
  readFixture,
  weightsMatchFixture,
} from '../bench/parity';
import { runAdmin } from './support/admin-cli';
import { cosine, norm, startTestApp, TEST_API_KEY } from './support/test-app';

const FIXTURES = join(__dirname, 'fixtures');
/** The other parity files: the shared inputs and the Qwen3 fixture (test/parity.e2e-spec.ts). */
const NOT_FAMILY = new Set(['parity-texts.json', 'parity-tiny.json']);
const FAMILY_FILES = readdirSync(FIXTURES)
  .filter((file) => /^parity-.+\.json$/.test(file) && !NOT_FAMILY.has(file))
  .sort();

/** How a request asks for the item's prompt: a custom instruction, else the prompt of its kind. */
function promptOptions(item: ParityFixtureItem): { input_type?: 'query' | 'document'; instruction?: string } {
  return item.kind === 'query' && item.instruction !== null
    ? { instruction: item.instruction }
    : { input_type: item.kind };
}

/** The same choice as the service's PromptTemplate takes it. */
function prefixOptions(item: ParityFixtureItem): { inputType?: 'query' | 'document'; instruction?: string } {
  const { input_type: inputType, instruction } = promptOptions(item);
  return { inputType, instruction };
}

describe('family checkpoints match sentence-transformers (CPU fp32, through the API)', () => {
  if (FAMILY_FILES.length === 0) {
    it.skip('no family fixture (test/fixtures/parity-<name>.json) yet: the GPU host writes them (docs/gpu-host.md, step families)', () =>
      undefined);
    return;
  }

  describe.each(FAMILY_FILES)('%s', (file) => {
    const fixture: ParityFixture = readFixture(join(FIXTURES, file));
    let work: string;
    let modelPath: string;
    let running: RunningApp | undefined;
    let client: OpenAI;
    let served: string;

    beforeAll(async () => {
      if (!isFamilyFixture(fixture) || !fixture.generator?.args?.length) {
        throw new Error(
          `${file} is not a family fixture (scripts/reference/st_reference.py): it has no pooling or generator arguments`,
        );
      }
      work = await mkdtemp(join(tmpdir(), 'family-parity-'));
      modelPath = join(work, fixture.name ?? 'model');
      await runAdmin(['checkpoint', 'generate', ...fixture.generator.args, '--out', modelPath]);
      running = await startTestApp({ MODEL_PATH: modelPath });
      served = running.app.get(ModelRegistry).first.model.id;
      client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 });
    }, 300_000);

    afterAll(async () => {
      await running?.app.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('is a reference whose sentence-transformers and plain-transformers paths agreed', () => {
      expect(fixture.agreement?.ok).toBe(true);
      expect(fixture.items.length).toBeGreaterThan(0);
    });

    it(`regenerates the checkpoint the fixture was made from (${fixture.generator?.args?.join(' ')})`, async () => {
      expect(Object.keys(fixture.model.weightsSha256 ?? {}).length).toBeGreaterThan(0);
      expect(await weightsMatchFixture(modelPath, fixture)).toEqual([]);
    });

    it('builds the inputs and token ids sentence-transformers fed the model', async () => {
      const prompts = running!.app.get(ModelRegistry).first.model.prompts;
      const inputs = fixture.items.map((item) => prompts.prefix(prefixOptions(item)) + item.text);
      const sequences = await running!.app.get(ModelRegistry).first.tokenizer.encode(inputs);
      const mismatches: string[] = [];
      fixture.items.forEach((item, index) => {
        if (inputs[index] !== item.input)
          mismatches.push(
            `${item.id}: input ${JSON.stringify(inputs[index])}, reference ${JSON.stringify(item.input)}`,
          );
        const actual = Array.from(sequences[index]);
        // A truncated reference keeps its closing special token: compare what comes before it.
        const [got, want] = item.truncated
          ? [actual.slice(0, item.tokenIds.length - 1), item.tokenIds.slice(0, -1)]
          : [actual, item.tokenIds];
        if (got.length !== want.length || got.some((id, i) => id !== want[i])) {
          const at = got.findIndex((id, i) => id !== want[i]);
          mismatches.push(
            `${item.id}: ${got.length} ids, reference ${want.length}; first difference at ${at < 0 ? Math.min(got.length, want.length) : at}`,
          );
        }
      });
      expect(mismatches).toEqual([]);
    });

    it('embeds every text at every Matryoshka size within cosine 0.99999 of sentence-transformers', async () => {
      const normalize = fixture.normalize ?? true;
      // One request per prompt choice (and truncation) and size, the texts of that choice together.
      const groups = new Map<string, ParityFixtureItem[]>();
      for (const item of fixture.items) {
        const key = JSON.stringify({ ...promptOptions(item), truncate: item.truncated === true });
        groups.set(key, [...(groups.get(key) ?? []), item]);
      }
      const failures: string[] = [];
      let compared = 0;
      for (const [key, items] of groups) {
        const options = JSON.parse(key) as Record<string, unknown>;
        if (options.truncate === false) delete options.truncate;
        for (const dimensions of fixture.dimensions) {
          const res = await client.embeddings.create({
            model: served,
            input: items.map((item) => item.text),
            dimensions,
            ...options,
          });
          const tokens = items.reduce((sum, item) => sum + item.tokenIds.length, 0);
          if (res.usage.prompt_tokens !== tokens)
            failures.push(
              `${key} at ${dimensions}: usage ${res.usage.prompt_tokens} tokens, reference ${tokens}`,
            );
          items.forEach((item, index) => {
            const actual = res.data[index].embedding;
            const reference = fromBase64(item.embeddings[String(dimensions)]);
            const similarity = cosine(actual, reference);
            const lengthError = Math.abs(norm(actual) / norm(reference) - 1);
            compared += 1;
            if (actual.length !== dimensions || !(similarity >= FLOAT32_THRESHOLD))
              failures.push(`${item.id} at ${dimensions}: cosine ${similarity} (${actual.length} values)`);
            if (!normalize && !(lengthError <= FLOAT32_NORM_TOLERANCE))
              failures.push(
                `${item.id} at ${dimensions}: length off by ${lengthError} (model without Normalize)`,
              );
            if (normalize && !(Math.abs(norm(actual) - 1) <= 1e-5))
              failures.push(`${item.id} at ${dimensions}: length ${norm(actual)}, expected a unit vector`);
          });
        }
      }
      expect(failures).toEqual([]);
      expect(compared).toBe(fixture.items.length * fixture.dimensions.length);
    });
  });
});
