/**
 * Issue 17, criterion 3: the reranker against the model card's transformers code, CPU fp32 in CI. Each
 * reference fixture (test/fixtures/rerank-<name>.json, written on the GPU host by
 * scripts/reference/rerank_reference.py from test/fixtures/rerank-pairs.json) names the `admin
 * checkpoint generate` arguments of its checkpoint; the same checkpoint is generated here, served by
 * the real app on the CPU in fp32, and every group is asked through POST /v1/rerank: each pair's token
 * ids must be the reference's (template, cut and all) and each score within 1e-5 of its own. A fixture
 * that disagrees fails; only the absence of any fixture skips, saying so.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RERANK_MAX_LENGTH, RerankPromptBuilder } from '@app/rerank/rerank-prompt';
import { ModelRegistry } from '@app/embeddings/model-registry';
import type { RunningApp } from '../apps/api/src/app.factory';
import {
  FLOAT32_SCORE_THRESHOLD,
  readRerankFixture,
  RerankFixture,
  rerankWeightsMatch,
} from '../bench/rerank-parity';
import { runAdmin } from './support/admin-cli';
import { Json, readJson, startTestApp, TEST_API_KEY } from './support/test-app';

const FIXTURES = join(__dirname, 'fixtures');
/** The inputs of the reference script, not a reference. */
const PAIRS_FILE = 'rerank-pairs.json';
const FIXTURE_FILES = readdirSync(FIXTURES)
  .filter((file) => /^rerank-.+\.json$/.test(file) && file !== PAIRS_FILE)
  .sort();
/** CPU fp32 against transformers' fp32: the scores (probabilities) agree to this. */
const SCORE_TOLERANCE = FLOAT32_SCORE_THRESHOLD;

/**
 * The fixture, checked for what this test needs: one it cannot regenerate, or that its own script
 * flagged, fails here naming the problem (a fixture never passes unchecked).
 */
function readFixture(file: string): RerankFixture {
  const fixture = readRerankFixture(join(FIXTURES, file));
  const problems: string[] = [];
  if (typeof fixture.name !== 'string' || !/^[\w.-]+$/.test(fixture.name)) problems.push('no usable name');
  if (!fixture.generatorArgs?.includes('--preset'))
    problems.push(
      'no generatorArgs to regenerate its checkpoint (a full-size fixture belongs on the GPU host)',
    );
  if (!Number.isInteger(fixture.maxLength)) problems.push('no maxLength');
  if (fixture.groups.length === 0) problems.push('no groups');
  if (fixture.agreement && fixture.agreement.ok !== true)
    problems.push("the model card's batched and per-pair scores disagreed when it was made");
  for (const [g, group] of fixture.groups.entries()) {
    if (typeof group.query !== 'string' || !Array.isArray(group.items) || group.items.length === 0)
      problems.push(`groups[${g}] has no query or no items`);
    for (const [i, item] of (group.items ?? []).entries()) {
      if (
        typeof item.document !== 'string' ||
        !Array.isArray(item.tokenIds) ||
        typeof item.truncated !== 'boolean' ||
        typeof item.score !== 'number'
      )
        problems.push(`groups[${g}].items[${i}] lacks document, tokenIds, truncated or score`);
    }
  }
  if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`);
  return fixture;
}

describe('rerankers match the model card (CPU fp32, through the API)', () => {
  if (FIXTURE_FILES.length === 0) {
    it.skip(`no rerank reference fixture (test/fixtures/rerank-<name>.json) yet: the GPU host writes them with scripts/reference/rerank_reference.py from ${PAIRS_FILE}`, () =>
      undefined);
    return;
  }

  describe.each(FIXTURE_FILES)('%s', (file) => {
    const fixture = readFixture(file);
    let work: string;
    let running: RunningApp | undefined;
    let builder: RerankPromptBuilder;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'rerank-parity-'));
      const modelPath = join(work, fixture.name);
      const args = (fixture.generatorArgs ?? '').split(/\s+/).filter(Boolean);
      await runAdmin(['checkpoint', 'generate', ...args, '--out', modelPath]);
      running = await startTestApp({ MODEL_PATH: modelPath, DTYPE: 'float32' });
      const tokenizer = running.app.get(ModelRegistry).first.tokenizer;
      builder = new RerankPromptBuilder(
        (text) => tokenizer.encodeText(text, false),
        Math.min(RERANK_MAX_LENGTH, running.app.get(ModelRegistry).first.model.maxInputTokens),
      );
    }, 300_000);

    afterAll(async () => {
      await running?.app.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it(`regenerates the checkpoint the fixture was made from (${fixture.generatorArgs})`, async () => {
      expect(Object.keys(fixture.model?.weightsSha256 ?? {}).length).toBeGreaterThan(0);
      expect(await rerankWeightsMatch(join(work, fixture.name), fixture)).toEqual([]);
    });

    it('serves the checkpoint as the reference loaded it: a reranker with its head, yes/no ids and length', async () => {
      expect(running!.app.get(ModelRegistry).first.model.task).toBe('rerank');
      expect(running!.app.get(ModelRegistry).first.lifecycle.head).toBe(fixture.head);
      expect(builder.maxLength).toBe(fixture.maxLength);
      if (fixture.head === 'yes-no') {
        const tokenizer = running!.app.get(ModelRegistry).first.tokenizer;
        expect([await tokenizer.encodeText('yes', false), await tokenizer.encodeText('no', false)]).toEqual([
          [fixture.yesTokenId],
          [fixture.noTokenId],
        ]);
      }
    });

    it("builds every pair's token ids as the model card did, cut where it cut", async () => {
      const mismatches: string[] = [];
      for (const [g, group] of fixture.groups.entries()) {
        for (const [i, item] of group.items.entries()) {
          const pair = await builder.build(group.query, item.document, group.instruction ?? undefined);
          const at = pair.tokenIds.findIndex((id, k) => id !== item.tokenIds[k]);
          if (pair.tokenIds.length !== item.tokenIds.length || at >= 0)
            mismatches.push(
              `groups[${g}].items[${i}]: ${pair.tokenIds.length} ids, reference ${item.tokenIds.length}; first difference at ${at < 0 ? Math.min(pair.tokenIds.length, item.tokenIds.length) : at}`,
            );
          if (pair.truncated !== item.truncated)
            mismatches.push(
              `groups[${g}].items[${i}]: truncated ${pair.truncated}, reference ${item.truncated}`,
            );
        }
      }
      expect(mismatches).toEqual([]);
    });

    it(`scores every pair within ${SCORE_TOLERANCE} of the reference, in its order`, async () => {
      const failures: string[] = [];
      let worst = 0;
      let compared = 0;
      for (const [g, group] of fixture.groups.entries()) {
        const res = await fetch(`${running!.url}/v1/rerank`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            query: group.query,
            documents: group.items.map((item) => item.document),
            ...(group.instruction !== null && group.instruction !== undefined
              ? { instruction: group.instruction }
              : {}),
            return_documents: false,
          }),
        });
        const body: Json = await readJson(res);
        if (res.status !== 200) {
          failures.push(`groups[${g}]: ${res.status} ${JSON.stringify(body)}`);
          continue;
        }
        const tokens = group.items.reduce((sum, item) => sum + item.tokenIds.length, 0);
        if (body.usage.prompt_tokens !== tokens)
          failures.push(`groups[${g}]: usage ${body.usage.prompt_tokens} tokens, reference ${tokens}`);
        for (const result of body.results as Array<{
          index: number;
          relevance_score: number;
          truncated?: true;
        }>) {
          const item = group.items[result.index];
          const error = Math.abs(result.relevance_score - item.score);
          worst = Math.max(worst, error);
          compared += 1;
          if (!(error <= SCORE_TOLERANCE))
            failures.push(
              `groups[${g}].items[${result.index}]: score ${result.relevance_score}, reference ${item.score} (raw ${item.raw})`,
            );
          if ((result.truncated ?? false) !== item.truncated)
            failures.push(`groups[${g}].items[${result.index}]: truncated flag ${result.truncated ?? false}`);
        }
        // The order is the reference's wherever its scores are further apart than the tolerance.
        const served = (body.results as Array<{ index: number }>).map((result) => result.index);
        for (let k = 1; k < served.length; k += 1) {
          const [before, after] = [group.items[served[k - 1]], group.items[served[k]]];
          if (after.score - before.score > 2 * SCORE_TOLERANCE)
            failures.push(
              `groups[${g}]: items[${served[k]}] ranked below items[${served[k - 1]}], reference above`,
            );
        }
      }
      expect(failures).toEqual([]);
      expect(compared).toBe(fixture.groups.reduce((sum, group) => sum + group.items.length, 0));
      expect(worst).toBeLessThanOrEqual(SCORE_TOLERANCE);
    });
  });
});
