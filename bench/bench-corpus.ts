import { Tokenizer } from '@anush008/tokenizers';
import { QWEN3_TOKENIZER_MODULE } from '@app/checkpoint/embedding-tokenizer';
import { mulberry32 } from '@app/common/seeded-random';
import { readFile, writeFile } from 'node:fs/promises';

/**
 * Bench corpora. A file is read by extension: `.jsonl` (one JSON string, or object with "text", per
 * line), `.json` (an array of strings or of such objects), anything else one text per non-empty line.
 * scripts/reference/baseline_bench.py reads the same formats, so both sides embed the same texts.
 * `builtin` is a deterministic synthetic corpus: short queries, passages and long documents.
 */
export async function loadCorpus(source: string, size = 1000): Promise<string[]> {
  if (source === 'builtin') return builtinCorpus(size);
  const content = await readFile(source, 'utf8');
  const fromItem = (item: unknown, where: string): string => {
    if (typeof item === 'string') return item;
    if (item && typeof item === 'object' && typeof (item as { text?: unknown }).text === 'string') {
      return (item as { text: string }).text;
    }
    throw new Error(`${source}: ${where} is neither a string nor an object with "text"`);
  };
  let texts: string[];
  if (source.endsWith('.jsonl')) {
    texts = content
      .split(/\r?\n/)
      .map((line, index) => ({ line, index }))
      .filter(({ line }) => line.trim() !== '')
      .map(({ line, index }) => fromItem(JSON.parse(line), `line ${index + 1}`));
  } else if (source.endsWith('.json')) {
    const parsed = JSON.parse(content) as unknown;
    if (!Array.isArray(parsed)) throw new Error(`${source}: expected a JSON array`);
    texts = parsed.map((item, index) => fromItem(item, `item ${index}`));
  } else {
    texts = content.split(/\r?\n/).filter((line) => line.trim() !== '');
  }
  texts = texts.filter((text) => text.length > 0);
  if (texts.length === 0) throw new Error(`${source}: no texts`);
  return texts;
}

export async function writeCorpus(path: string, texts: readonly string[]): Promise<void> {
  await writeFile(path, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
}

const WORDS = (
  'the of and to in is for that on with as by it this are from at be was an or which has have not can more one ' +
  'model data system time new first used two also between other these such its their were may most only after ' +
  'use when into where while some than however during each both through over under research network language ' +
  'learning training results performance method methods approach based using large small different number high ' +
  'low energy water city river history world government company market price service user users search query ' +
  'document embedding vector retrieval server request response memory device graph token tokens batch latency ' +
  'throughput cluster replica parallel tensor layer attention weight weights function value values process ' +
  'image text code file files example information development international national university science ' +
  'people country century region population area building design software hardware computer program version'
).split(' ');

/**
 * `size` texts: 50% short queries (6-20 words), 35% passages (60-200 words), 15% long documents
 * (400-900 words) — roughly the mix of a retrieval workload that embeds queries and chunks.
 */
export function builtinCorpus(size = 1000, seed = 42): string[] {
  const random = mulberry32(seed);
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const texts: string[] = [];
  for (let i = 0; i < size; i++) {
    const kind = random();
    const length = kind < 0.5 ? between(6, 20) : kind < 0.85 ? between(60, 200) : between(400, 900);
    const words: string[] = [];
    for (let w = 0; w < length; w++) words.push(WORDS[Math.floor(random() * WORDS.length)]);
    let text = words.join(' ');
    text = text.charAt(0).toUpperCase() + text.slice(1) + (kind < 0.5 ? '?' : '.');
    texts.push(text);
  }
  return texts;
}

// ---------------------------------------------------------------------------------------------------
// Reranking workload: one query against N documents of about `docTokens` tokens each.

/** Counts a text's tokens (the real tokenizer in `admin bench`; a fake in unit tests). */
export type TokenCounter = (text: string) => Promise<number> | number;

/** One query and its candidate documents: the shape of test/fixtures/rerank-pairs.json's groups. */
export interface RerankGroup {
  query: string;
  /** Absent: the server's default instruction (the model card's). */
  instruction?: string;
  documents: string[];
}

/**
 * What `admin bench --task rerank` sends and scripts/reference/rerank_baseline.py scores: each request
 * is one group (round robin over the groups). The `--write-corpus` file holds exactly this object.
 */
export interface RerankWorkload {
  groups: RerankGroup[];
}

/** The builtin workload's query: answered by the astronomy passages, as a real search would be. */
export const RERANK_BENCH_QUERY = "How does the tilt of the Earth's axis cause the seasons?";

/**
 * Plain English sentences by topic (written for this corpus). Passages are joined from them, most of a
 * passage from one topic, so a reranker sees coherent text rather than word salad.
 */
const RERANK_TOPICS: readonly (readonly string[])[] = [
  [
    "The Earth's axis is tilted by about twenty-three and a half degrees relative to the plane of its orbit around the Sun.",
    'When the northern hemisphere leans toward the Sun, sunlight strikes it more directly and the days there grow longer and warmer.',
    'Six months later the same hemisphere leans away, so the light arrives at a shallow angle and spreads its energy over a wider area.',
    "Many people assume that summer happens because the planet is closer to the Sun, but Earth's orbit is nearly circular and the distance barely matters.",
    'At the solstices one pole points as far toward the Sun as it ever does, which gives the longest and the shortest days of the year.',
    'At the equinoxes neither pole leans toward the Sun, and day and night last roughly twelve hours each almost everywhere on the globe.',
    'Near the equator the angle of the midday Sun changes little through the year, so the tropics see wet and dry seasons rather than cold winters.',
    'Mars has an axial tilt similar to ours, and its seasons last about twice as long because its year is nearly twice as long.',
    'Uranus is tipped almost onto its side, so each of its poles spends decades in continuous daylight followed by decades of darkness.',
    'Over tens of thousands of years the tilt itself wobbles slightly, a slow cycle that astronomers link to the timing of past ice ages.',
  ],
  [
    'A good loaf of bread starts with flour, water, salt and yeast, but the time given to fermentation shapes its flavour more than any ingredient.',
    'Kneading develops gluten, the network of proteins that traps the gas released by the yeast and lets the dough rise.',
    'Sourdough relies on a culture of wild yeast and lactic acid bacteria, which gives the crumb its tang and keeps the bread fresh for longer.',
    'Professional bakers weigh their ingredients instead of measuring cups, because a cup of flour can vary by twenty percent depending on how it is packed.',
    'Steam in the first minutes of baking keeps the crust soft while the loaf expands, and later lets it set into a glossy, crackling shell.',
    'The browning of the crust comes from the Maillard reaction, in which sugars and amino acids combine at high temperature into hundreds of aromatic compounds.',
    'Letting the dough rest in the refrigerator overnight slows the yeast and allows enzymes to break starch into sugars that deepen the taste.',
    'Whole grain flour absorbs more water than white flour, so recipes that use it usually call for a wetter dough and a longer rest.',
    'A loaf should cool on a rack before it is sliced, since the interior keeps cooking and setting for some time after it leaves the oven.',
    'In many villages the communal oven was once the centre of daily life, and families marked their loaves so they could recognise them after baking.',
  ],
  [
    'The printing press with movable type spread across Europe in the second half of the fifteenth century and changed how knowledge travelled.',
    'Before printing, books were copied by hand, which made them expensive and meant that errors multiplied with every new copy.',
    'Within fifty years of the first presses, printers had produced millions of volumes, from religious texts to grammar books and almanacs.',
    'Cheap pamphlets allowed arguments about politics and faith to reach ordinary readers, and authorities soon tried to license and censor the trade.',
    'Standardised editions helped scholars compare results and build on one another, which historians see as one foundation of modern science.',
    'Printing also fixed the spelling of many languages, because type setters in a few large cities chose the forms that readers came to expect.',
    'Woodblock printing had been used in East Asia for centuries earlier, and metal movable type appeared in Korea well before it did in Europe.',
    'Literacy rose slowly at first, yet the presence of printed material in towns gave people new reasons to learn to read.',
    'Newspapers grew out of printed newsletters that merchants used to share prices, shipping reports and news of wars.',
    'The workshop of a printer employed compositors, press operators and proofreaders, and many of them became influential figures in their cities.',
  ],
  [
    'Vaccines train the immune system to recognise a pathogen without the person having to survive the disease itself.',
    'Most vaccines expose the body to an inactivated virus, a harmless piece of it, or instructions that let cells make one of its proteins for a short time.',
    'After vaccination, memory cells remain in the blood and lymph nodes for years, ready to respond quickly if the real pathogen appears.',
    'When enough people in a community are immune, an infection cannot spread easily, which protects newborns and those who cannot be vaccinated.',
    'Clinical trials test a vaccine in stages, first for safety in a small group and then for effectiveness in thousands of volunteers.',
    'Some vaccines need booster doses because the protection they give fades over time or because the virus changes from season to season.',
    'The eradication of smallpox, declared in 1980, showed that a coordinated vaccination campaign could remove a disease from the whole world.',
    'Common side effects such as a sore arm or a mild fever are signs that the immune system is responding, and they usually pass within a day or two.',
    'Cold chains of refrigerators and insulated boxes are needed to keep many vaccines effective on their way from the factory to remote clinics.',
    'Researchers monitor vaccinated populations for rare adverse events long after approval, a system designed to catch problems trials are too small to see.',
  ],
  [
    'A database index works like the index at the back of a book, letting the system find matching rows without reading the entire table.',
    'Most relational databases store indexes as balanced trees, which keep lookups, insertions and range scans fast as the table grows.',
    'Every index speeds up some queries but slows down writes, because each insert or update must also change the index structures.',
    'A composite index on two columns helps queries that filter on the first column, but usually not queries that filter only on the second.',
    'The query planner estimates the cost of different strategies using statistics about the data, and a stale estimate can lead it to a poor plan.',
    'Examining the execution plan of a slow query often reveals a full table scan where the developer expected an index lookup.',
    'Covering indexes include every column a query needs, so the database can answer it without visiting the table at all.',
    'Full text search uses inverted indexes that map each word to the documents containing it, along with positions for phrase queries.',
    'Vector databases index embeddings with graph or cluster structures that trade a little accuracy for much faster nearest neighbour search.',
    'Rebuilding a fragmented index can recover performance, but on a busy system it must be scheduled carefully to avoid blocking traffic.',
  ],
  [
    'Inflation measures how quickly the general level of prices rises, which means that each unit of money buys a little less over time.',
    'Central banks usually raise interest rates when inflation runs high, making borrowing more expensive and cooling spending and investment.',
    'Moderate, predictable inflation is considered healthy by many economists, while sudden swings make it hard for households and firms to plan.',
    'Wages that fail to keep up with prices reduce real income, so workers often bargain for raises linked to an index of consumer prices.',
    'A shortage of key goods, such as energy after a supply shock, can push prices up even when demand across the economy is weak.',
    'Savers lose purchasing power when the interest on their deposits is lower than the rate of inflation.',
    'Hyperinflation, when prices double within weeks or days, has usually followed wars, collapsing governments or the printing of money to pay debts.',
    'Statistical agencies track a basket of goods and services, updating its contents as the things people buy change over the years.',
    'Expectations matter, because if people believe prices will rise they may spend sooner and demand higher wages, which feeds the increase.',
    'Some countries have tied their currency to a more stable one in an attempt to import credibility and bring inflation under control.',
  ],
  [
    'Coral reefs cover a tiny fraction of the ocean floor yet shelter about a quarter of all known marine species.',
    'Reef-building corals live in partnership with microscopic algae that supply them with sugars made from sunlight.',
    'When the water stays too warm for too long, the corals expel their algae and turn white, an event known as bleaching.',
    'Bleached corals can recover if temperatures fall quickly, but repeated heat waves leave them weak, starving and open to disease.',
    'Healthy reefs break the force of waves and protect coastlines, harbours and beaches from storms and erosion.',
    'Parrotfish graze on algae that would otherwise smother young corals, and their droppings produce much of the white sand of tropical islands.',
    'Runoff from farms carries nutrients into coastal waters, feeding algae blooms that block light and compete with the reef.',
    'Scientists are breeding corals that tolerate heat better and planting fragments onto damaged reefs to speed their recovery.',
    'Marine protected areas that limit fishing often see larger fish populations within a few years, which benefits nearby fisheries as well.',
    'Divers and snorkellers can harm reefs by touching them or by wearing sunscreens that contain chemicals toxic to coral larvae.',
  ],
  [
    'Marathon runners rely on a mix of stored carbohydrate and fat, and the balance between them shifts as the pace changes.',
    'Most training plans build weekly distance gradually, because sudden increases are a common cause of stress fractures and tendon pain.',
    'Long, slow runs teach the body to burn fat efficiently and strengthen the heart, while shorter intervals raise the pace a runner can sustain.',
    'Hitting the wall, a sudden loss of energy late in a race, happens when the glycogen stored in muscles and liver runs low.',
    'Drinking to thirst is usually enough, and runners who drink far more than they sweat risk a dangerous fall in blood sodium.',
    'Elite runners take about one hundred and eighty steps a minute, although the best cadence depends on height and running style.',
    'Tapering, reducing training in the last weeks before a race, lets muscles repair themselves and restore their fuel reserves.',
    'Modern racing shoes combine light foam with a stiff plate, a design that studies suggest saves a few percent of energy at marathon pace.',
    'Heat and humidity slow everyone down, so experienced runners adjust their goal pace when the forecast is warm.',
    'Sleep is one of the most effective recovery tools, since much of the repair of muscle tissue happens during deep sleep.',
  ],
  [
    'A symphony orchestra is arranged in sections of strings, woodwinds, brass and percussion, each with its own principal player.',
    'The conductor sets the tempo and shapes the balance between sections, but much of the work happens in rehearsal rather than on the night.',
    'Violins are divided into first and second groups, which often play different lines that weave together into a single texture.',
    'Before a concert the oboe plays a steady note and the other instruments tune to it, because its sound is clear and hard to bend.',
    'Composers of the classical period wrote for smaller ensembles, while romantic works added more brass and percussion for dramatic effect.',
    'A musical score shows every part on the same page, so the conductor can follow what each section is playing at any moment.',
    'The acoustics of a concert hall depend on its shape and materials, and designers model how sound reflects from walls, balconies and ceilings.',
    'Many orchestras now run education programmes that bring musicians into schools and invite young audiences to open rehearsals.',
    'String players change the colour of their sound by bowing closer to the bridge or the fingerboard, or by plucking the strings instead.',
    'Recording a symphony involves many microphones, and engineers mix them to recreate the impression of sitting in a good seat.',
  ],
  [
    'Volcanoes form where molten rock from deep inside the Earth finds a path to the surface, most often along the edges of tectonic plates.',
    'The explosiveness of an eruption depends largely on how much gas and silica the magma contains.',
    'Runny basalt lava, common in Hawaii and Iceland, lets gas escape gently and builds broad shield volcanoes with gentle slopes.',
    'Sticky, silica-rich magma traps gas until the pressure is released violently, throwing ash high into the atmosphere.',
    'Volcanic ash can travel thousands of kilometres and is dangerous to aircraft because it melts inside jet engines.',
    'Large eruptions can cool the global climate for a year or two, as sulphur droplets in the upper atmosphere reflect sunlight.',
    'Geologists watch for swarms of small earthquakes, swelling of the ground and changes in gas emissions that may signal rising magma.',
    'Soils formed from volcanic rock are often very fertile, which is one reason farmers have long lived on the slopes of active volcanoes.',
    'Some volcanoes rise from the middle of a plate above hot spots, where plumes of hot rock climb from deep in the mantle.',
    'Underwater eruptions along mid-ocean ridges create new sea floor every year, slowly pushing the continents apart.',
  ],
  [
    'High-speed trains run on dedicated tracks with gentle curves, because sharp bends and level crossings would limit their speed.',
    'Over distances of a few hundred kilometres, a fast train often beats a flight once the time spent reaching and passing through airports is counted.',
    'Electric trains draw power from overhead lines, and many networks now buy much of that electricity from renewable sources.',
    'Signalling systems on fast lines send speed limits directly to the cab, since a driver cannot read trackside signals reliably at three hundred kilometres an hour.',
    'Building a new line is expensive, and tunnels, bridges and the purchase of land usually make up most of the cost.',
    'Stations in city centres let passengers step off a train close to their destination, an advantage that airports far from town cannot match.',
    'Maglev trains float above a guideway on magnetic fields, removing wheel friction but requiring an entirely separate network.',
    'Noise barriers, cuttings and careful timetables help reduce the disturbance fast trains cause to the towns they pass.',
    'Passenger numbers on a new route often grow faster than forecasts predicted, as people change where they live and work.',
    'Freight and passenger trains can share tracks, but the difference in their speeds reduces how many trains the line can carry.',
  ],
  [
    'Honeybees communicate the direction and distance of flowers to their nest mates through a waggle dance performed in the dark hive.',
    'The angle of the dance relative to vertical tells other bees the angle to fly relative to the Sun.',
    'A colony in summer can hold tens of thousands of workers, almost all of them female, together with a single laying queen.',
    'Workers change jobs as they age, cleaning cells and feeding larvae when young and foraging outside only in the last weeks of their lives.',
    'Bees turn nectar into honey by adding enzymes and fanning their wings until most of the water evaporates.',
    'Many crops, from apples to almonds, depend on bees for pollination, and farmers often rent hives during the flowering season.',
    'Wild bees, including bumblebees and solitary species, are often better pollinators of particular plants than honeybees.',
    'Parasitic mites, pesticides and the loss of flowering meadows have all contributed to the decline of bee populations in many regions.',
    'In winter a colony clusters into a tight ball, and the bees shiver their flight muscles to keep the centre warm.',
    'When a colony grows crowded, the old queen leaves with part of the workers in a swarm to found a new nest elsewhere.',
  ],
];

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * `count` English passages of about `docTokens` tokens (as `countTokens` counts them), deterministic
 * for a seed. Each passage opens with a different sentence while the bank lasts (120 sentences), so no
 * two of the first 120 share more than the template's prefix; it continues with its topic's other
 * sentences, then another topic's, and stops at whichever sentence boundary lands closest to the
 * target. Sentences are counted once (with the leading space they get when joined: Qwen3's
 * pre-tokenizer splits before a space, so the counts add up); a passage past the bank repeats it.
 */
export async function rerankPassages(
  count: number,
  docTokens: number,
  countTokens: TokenCounter,
  seed = 17,
): Promise<string[]> {
  if (!Number.isSafeInteger(count) || count < 1) throw new Error(`documents must be a positive integer`);
  if (!Number.isSafeInteger(docTokens) || docTokens < 1)
    throw new Error(`docTokens must be a positive integer`);
  const random = mulberry32(seed);
  const bank = RERANK_TOPICS.flatMap((sentences, topic) => sentences.map((text) => ({ text, topic })));
  const first = new Map<string, number>();
  const joined = new Map<string, number>();
  const tokensOf = async (text: string, leading: boolean): Promise<number> => {
    const cache = leading ? joined : first;
    let tokens = cache.get(text);
    if (tokens === undefined) {
      tokens = await countTokens(leading ? ` ${text}` : text);
      cache.set(text, tokens);
    }
    return tokens;
  };
  const openers = shuffled(bank, random);
  const passages: string[] = [];
  for (let i = 0; i < count; i++) {
    const opener = openers[i % openers.length];
    const otherTopics = shuffled(
      RERANK_TOPICS.map((_, topic) => topic).filter((topic) => topic !== opener.topic),
      random,
    );
    const order = [
      ...shuffled(
        RERANK_TOPICS[opener.topic].filter((text) => text !== opener.text),
        random,
      ),
      ...otherTopics.flatMap((topic) => shuffled(RERANK_TOPICS[topic], random)),
    ];
    const sentences = [opener.text];
    let tokens = await tokensOf(opener.text, false);
    for (let next = 0; tokens < docTokens; next++) {
      const sentence = order[next % order.length];
      const more = await tokensOf(sentence, true);
      // Stop short when the sentence would overshoot by more than stopping undershoots.
      if (tokens + more - docTokens > docTokens - tokens) break;
      sentences.push(sentence);
      tokens += more;
    }
    passages.push(sentences.join(' '));
  }
  return passages;
}

export interface BuiltinRerankOptions {
  documents: number;
  docTokens: number;
  query?: string;
  instruction?: string;
}

/** One group: RERANK_BENCH_QUERY (or `query`) against `documents` builtin passages. */
export async function builtinRerankWorkload(
  options: BuiltinRerankOptions,
  countTokens: TokenCounter,
): Promise<RerankWorkload> {
  const documents = await rerankPassages(options.documents, options.docTokens, countTokens);
  return {
    groups: [
      {
        query: options.query ?? RERANK_BENCH_QUERY,
        ...(options.instruction !== undefined ? { instruction: options.instruction } : {}),
        documents,
      },
    ],
  };
}

/**
 * A reranking workload from `source`: `builtin`; a JSON object with `groups` (what `--write-corpus`
 * writes, or test/fixtures/rerank-pairs.json), used as it is; or any bench corpus file (loadCorpus's
 * formats), whose first `documents` texts become one group's documents under `query`.
 */
export async function loadRerankWorkload(
  source: string,
  options: BuiltinRerankOptions,
  countTokens: TokenCounter,
): Promise<RerankWorkload> {
  if (source === 'builtin') return builtinRerankWorkload(options, countTokens);
  if (source.endsWith('.json')) {
    const parsed = JSON.parse(await readFile(source, 'utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      return parseRerankWorkload(parsed, source);
  }
  const texts = await loadCorpus(source);
  if (texts.length < options.documents) {
    throw new Error(`${source}: ${texts.length} texts, fewer than --documents ${options.documents}`);
  }
  return {
    groups: [
      {
        query: options.query ?? RERANK_BENCH_QUERY,
        ...(options.instruction !== undefined ? { instruction: options.instruction } : {}),
        documents: texts.slice(0, options.documents),
      },
    ],
  };
}

/** Checks a parsed `{groups: [{query, instruction?, documents}]}` object; names what is wrong. */
export function parseRerankWorkload(value: unknown, source = 'workload'): RerankWorkload {
  const groups = (value as { groups?: unknown }).groups;
  if (!Array.isArray(groups) || groups.length === 0)
    throw new Error(`${source}: expected a non-empty "groups" array`);
  return {
    groups: groups.map((group: unknown, index): RerankGroup => {
      const g = (group ?? {}) as Record<string, unknown>;
      if (typeof g.query !== 'string') throw new Error(`${source}: groups[${index}].query is not a string`);
      if (g.instruction !== undefined && g.instruction !== null && typeof g.instruction !== 'string') {
        throw new Error(`${source}: groups[${index}].instruction is not a string`);
      }
      const documents = g.documents;
      if (
        !Array.isArray(documents) ||
        documents.length === 0 ||
        documents.some((d) => typeof d !== 'string')
      ) {
        throw new Error(`${source}: groups[${index}].documents is not a non-empty array of strings`);
      }
      return {
        query: g.query,
        ...(typeof g.instruction === 'string' ? { instruction: g.instruction } : {}),
        documents: documents as string[],
      };
    }),
  };
}

/** Writes the workload as scripts/reference/rerank_baseline.py reads it. */
export async function writeRerankWorkload(path: string, workload: RerankWorkload): Promise<void> {
  await writeFile(path, `${JSON.stringify(workload, null, 1)}\n`);
}

/**
 * Token counts by the real Qwen3 tokenizer (the tokenizer.json every generated Qwen3 checkpoint
 * carries), no special tokens: what a document adds to a reranking pair before the template.
 */
export function qwen3TokenCounter(): (text: string) => Promise<number> {
  const tokenizer = Tokenizer.fromFile(require.resolve(QWEN3_TOKENIZER_MODULE));
  return async (text) => (await tokenizer.encode(text, null, { addSpecialTokens: false })).getLength();
}

/** Tokens per document of a workload (before the template), as `countTokens` counts them. */
export async function documentTokenStats(
  workload: RerankWorkload,
  countTokens: TokenCounter,
): Promise<{ mean: number; min: number; max: number }> {
  const counts: number[] = [];
  for (const group of workload.groups) {
    for (const document of group.documents) counts.push(await countTokens(document));
  }
  return {
    mean: counts.reduce((sum, n) => sum + n, 0) / counts.length,
    min: Math.min(...counts),
    max: Math.max(...counts),
  };
}
