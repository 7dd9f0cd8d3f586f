/**
 * Tokenizers for the encoder families, built deterministically in Hugging Face's tokenizer.json format
 * because no npm package ships BERT's or XLM-R's: a WordPiece one shaped like bert-base-uncased's and
 * a SentencePiece-Unigram one shaped like XLM-RoBERTa's. Their vocabularies are small (the tiny
 * presets' embedding tables match them) but cover English text with whole words and subwords, so
 * token ids vary the way a real tokenizer's do.
 */

type Json = Record<string, unknown>;

/** Frequent English words (and a few French, German and Spanish ones for the multilingual one). */
const COMMON_WORDS = `the of and to a in is it you that he was for on are with as his they be at one have
this from or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form sentence
great think say help low line differ turn cause much mean before move right boy old too same tell does set
three want air well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer school grow
study still learn plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real life few north
open seem together next white children begin got walk example ease paper group always music those both
mark often letter until mile river car feet care second book carry took science eat room friend began idea
fish mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order fire south
problem piece told knew pass since top whole king space heard best hour better true during hundred five
remember step early hold west ground interest reach fast verb sing listen six table travel less morning ten
simple several vowel toward war lay against pattern slow center love person money serve appear road map
rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note
wait plan figure star box noun field rest correct able pound done beauty drive stood contain front teach
week final gave green quick develop ocean warm free minute strong special mind behind clear tail produce
fact street inch multiply nothing course stay wheel full force blue object decide surface deep moon island
foot system busy test record boat common gold possible plane stead dry wonder laugh thousand ago ran check
game shape equate miss brought heat snow tire bring yes distant fill east paint language among capital
france paris berlin london search query passage document retrieve relevant embedding model text vector
brown fox jumps lazy hello world les la le et est une der die das und ist ein el los es por que`
  .split(/\s+/)
  .filter((word) => word.length > 0);

const ENGLISH_SUFFIXES = `s es ed ing ly er est ion tion ation ment ness able ible al ial ful less ous ive
ize ise ity ty en ence ance ant ent ist ism ure ry or ar ic ical y ie ies ier iest ward wards ship hood dom`
  .split(/\s+/)
  .filter((piece) => piece.length > 0);

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';

function charRange(from: string, to: string): string[] {
  const out: string[] = [];
  for (let code = from.codePointAt(0)!; code <= to.codePointAt(0)!; code++)
    out.push(String.fromCodePoint(code));
  return out;
}

/** Appends the pieces of `candidates` not yet present, until `size` entries. */
function fill(vocab: string[], seen: Set<string>, candidates: Iterable<string>, size: number): void {
  for (const piece of candidates) {
    if (vocab.length >= size) return;
    if (seen.has(piece)) continue;
    seen.add(piece);
    vocab.push(piece);
  }
}

function* bigrams(prefix: string): Generator<string> {
  for (const a of LOWER) for (const b of LOWER) yield `${prefix}${a}${b}`;
}

/** English's most frequent letters, for three-letter pieces. */
const FREQUENT = 'etaoinshrdlcumwfgyp';

function* trigrams(prefix: string): Generator<string> {
  for (const a of FREQUENT) for (const b of FREQUENT) for (const c of FREQUENT) yield `${prefix}${a}${b}${c}`;
}

export const WORDPIECE_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

/** The WordPiece vocabulary, in id order: specials, characters, ##characters, words, ##suffixes, bigrams. */
export function wordPieceVocabulary(size: number): string[] {
  const vocab: string[] = [];
  const seen = new Set<string>();
  const chars = [...PUNCTUATION, ...DIGITS, ...LOWER];
  fill(vocab, seen, WORDPIECE_SPECIALS, size);
  fill(vocab, seen, chars, size);
  fill(
    vocab,
    seen,
    [...DIGITS, ...LOWER].map((c) => `##${c}`),
    size,
  );
  fill(vocab, seen, COMMON_WORDS, size);
  fill(
    vocab,
    seen,
    ENGLISH_SUFFIXES.map((s) => `##${s}`),
    size,
  );
  fill(vocab, seen, bigrams(''), size);
  fill(vocab, seen, bigrams('##'), size);
  fill(vocab, seen, trigrams('##'), size);
  if (vocab.length < size)
    throw new RangeError(`a generated WordPiece vocabulary holds at most ${vocab.length} entries`);
  return vocab;
}

const addedToken = (id: number, content: string, lstrip = false): Json => ({
  id,
  content,
  single_word: false,
  lstrip,
  rstrip: false,
  normalized: false,
  special: true,
});

/** A bert-base-uncased-style tokenizer.json: lowercasing BertNormalizer, WordPiece, `[CLS] $A [SEP]`. */
export function wordPieceTokenizerJson(size: number): Json {
  const vocab = wordPieceVocabulary(size);
  const ids = Object.fromEntries(vocab.map((piece, id) => [piece, id]));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: WORDPIECE_SPECIALS.map((token) => addedToken(ids[token], token)),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [ids['[CLS]']], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [ids['[SEP]']], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: ids,
    },
  };
}

/** XLM-R's specials at its ids: <s> 0, <pad> 1, </s> 2, <unk> 3; <mask> is the last id. */
export const UNIGRAM_SPECIALS = ['<s>', '<pad>', '</s>', '<unk>'] as const;
const METASPACE = '\u2581';

/**
 * The Unigram vocabulary with log-probability scores, in id order. Whole words score well above
 * their characters, so known words stay one piece; unknown ones fall back to pieces and characters.
 */
export function unigramVocabulary(size: number): Array<[string, number]> {
  const pieces: string[] = [];
  const seen = new Set<string>();
  const scored: Array<[string, number]> = UNIGRAM_SPECIALS.map((token) => [token, 0]);
  for (const token of UNIGRAM_SPECIALS) seen.add(token);
  const body = size - UNIGRAM_SPECIALS.length - 1;
  const letters = [
    ...LOWER,
    ...LOWER.toUpperCase(),
    ...DIGITS,
    ...PUNCTUATION,
    ...charRange('\u00e0', '\u00ff'),
    ...charRange('\u03b1', '\u03c9'),
    ...charRange('\u0430', '\u044f'),
    ...charRange('\u4e00', '\u4e3f'),
  ];
  const words = COMMON_WORDS.map((word) => `${METASPACE}${word}`);
  const capitalised = COMMON_WORDS.slice(0, 200).map(
    (word) => `${METASPACE}${word[0].toUpperCase()}${word.slice(1)}`,
  );
  const push = (candidates: Iterable<string>): void => fill(pieces, seen, candidates, body);
  push([METASPACE]);
  push(letters);
  push(words);
  push(capitalised);
  push(ENGLISH_SUFFIXES);
  push(bigrams(METASPACE));
  push(bigrams(''));
  push(trigrams(''));
  if (pieces.length < body)
    throw new RangeError(`a generated Unigram vocabulary holds at most ${pieces.length + 5} entries`);
  for (const piece of pieces) {
    const length = [...piece.replace(METASPACE, '')].length;
    // Longer pieces score higher per piece; within a length, earlier (more common) ones win ties.
    const score = piece === METASPACE ? -3 : length <= 1 ? -12 : -6 - 4 / length - scored.length * 1e-5;
    scored.push([piece, Number(score.toFixed(5))]);
  }
  scored.push(['<mask>', 0]);
  return scored;
}

/** An XLM-RoBERTa-style tokenizer.json: NFKC, Metaspace, Unigram, `<s> $A </s>`. */
export function unigramTokenizerJson(size: number): Json {
  const vocab = unigramVocabulary(size);
  const id = (token: string): number => vocab.findIndex(([piece]) => piece === token);
  const special = (token: string): Json => ({ id: token, ids: [id(token)], tokens: [token] });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      ...UNIGRAM_SPECIALS.map((token) => addedToken(id(token), token)),
      addedToken(id('<mask>'), '<mask>', true),
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }],
    },
    pre_tokenizer: { type: 'Metaspace', replacement: METASPACE, prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: { '<s>': special('<s>'), '</s>': special('</s>') },
    },
    decoder: { type: 'Metaspace', replacement: METASPACE, prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: id('<unk>'), vocab, byte_fallback: false },
  };
}
