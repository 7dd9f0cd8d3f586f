import { Command, CommandRunner, Option } from 'nest-commander';
import {
  builtinCorpus,
  documentTokenStats,
  loadCorpus,
  loadRerankWorkload,
  qwen3TokenCounter,
  writeCorpus,
  writeRerankWorkload,
} from '@app/bench/bench-corpus';
import { BenchClient, FetchLike, keepAliveFetch } from '@app/bench/http-client';
import { formatLoadRun, LoadGenerator } from '@app/bench/load-generator';
import { formatRerankRun, RerankLoadGenerator } from '@app/bench/rerank-load-generator';
import { parseChoice, parseInteger } from './option-parsers';
import { API_KEY_OPTION, discoverApiKey, logLine, parseServerUrl, progressLog } from './server-client';

export type BenchTask = 'embed' | 'rerank';

interface BenchOptions {
  task: BenchTask;
  url?: string;
  apiKey?: string;
  model?: string;
  concurrency: number;
  requests: number;
  corpus: string;
  corpusSize: number;
  batch: number;
  dimensions?: number;
  inputType?: 'query' | 'document';
  encoding: 'float' | 'base64';
  client: BenchClient;
  warmup?: number;
  timeout: number;
  json?: boolean;
  writeCorpus?: string;
  documents: number;
  docTokens: number;
  query?: string;
  instruction?: string;
  returnDocuments?: boolean;
}

@Command({
  name: 'bench',
  description:
    'load-test POST /v1/embeddings (or, with --task rerank, POST /v1/rerank): throughput (req/s, embeddings/s or pairs/s, tokens/s) and latency p50/p90/p99',
})
export class BenchCommand extends CommandRunner {
  constructor(
    private readonly load: LoadGenerator,
    private readonly rerankLoad: RerankLoadGenerator,
  ) {
    super();
  }

  async run(_params: string[], options: BenchOptions): Promise<void> {
    if (options.task === 'rerank') return this.runRerank(options);
    for (const [flag, set] of [
      ['--query', options.query !== undefined],
      ['--instruction', options.instruction !== undefined],
      ['--return-documents', options.returnDocuments],
    ] as const) {
      if (set) throw new Error(`${flag} is for --task rerank`);
    }
    if (options.writeCorpus) {
      const texts =
        options.corpus === 'builtin' ? builtinCorpus(options.corpusSize) : await loadCorpus(options.corpus);
      await writeCorpus(options.writeCorpus, texts);
      process.stdout.write(`wrote ${texts.length} texts to ${options.writeCorpus}\n`);
      if (!options.url) return;
    }
    if (!options.url) throw new Error('--url is required (e.g. --url http://localhost:6008)');
    const texts = await loadCorpus(options.corpus, options.corpusSize);
    logLine(
      `bench: ${options.requests} requests of ${options.batch} input(s) from ${texts.length} texts, concurrency ${options.concurrency}`,
    );
    const apiKey = options.apiKey || discoverApiKey('bench', logLine, true);
    const result = await this.load.run(
      {
        url: options.url,
        apiKey,
        model: options.model,
        texts,
        concurrency: options.concurrency,
        requests: options.requests,
        batch: options.batch,
        dimensions: options.dimensions,
        inputType: options.inputType,
        encodingFormat: options.encoding,
        warmupRequests: options.warmup ?? options.concurrency,
        timeoutMs: options.timeout,
        onProgress: progressLog(options.json, logLine),
      },
      this.client(options),
    );
    this.report(result, options.json, formatLoadRun);
  }

  /**
   * --task rerank: one query against --documents passages of ~--doc-tokens tokens per request (or the
   * groups of a workload file), over POST /v1/rerank; --write-corpus writes the workload as JSON for
   * scripts/reference/rerank_baseline.py, so both sides score the same pairs.
   */
  private async runRerank(options: BenchOptions): Promise<void> {
    if (options.batch !== 1) throw new Error('--batch is for --task embed (a rerank request is one query)');
    if (options.dimensions !== undefined || options.inputType !== undefined) {
      throw new Error('--dimensions and --input-type are for --task embed');
    }
    if (options.writeCorpus && !options.writeCorpus.endsWith('.json')) {
      throw new Error('--write-corpus with --task rerank writes a JSON workload: name the file *.json');
    }
    const countTokens = qwen3TokenCounter();
    const workload = await loadRerankWorkload(
      options.corpus,
      {
        documents: options.documents,
        docTokens: options.docTokens,
        query: options.query,
        instruction: options.instruction,
      },
      countTokens,
    );
    const documentTokens = await documentTokenStats(workload, countTokens);
    const documents = workload.groups.reduce((sum, g) => sum + g.documents.length, 0);
    const shape = `${workload.groups.length} quer${workload.groups.length === 1 ? 'y' : 'ies'}, ${documents} documents of ${documentTokens.mean.toFixed(0)} tokens on average (${documentTokens.min}-${documentTokens.max}, Qwen3 tokenizer)`;
    if (options.writeCorpus) {
      await writeRerankWorkload(options.writeCorpus, workload);
      process.stdout.write(`wrote ${shape} to ${options.writeCorpus}\n`);
      if (!options.url) return;
    }
    if (!options.url) throw new Error('--url is required (e.g. --url http://localhost:6008)');
    logLine(`bench rerank: ${options.requests} requests over ${shape}, concurrency ${options.concurrency}`);
    const apiKey = options.apiKey || discoverApiKey('bench', logLine, true);
    const result = await this.rerankLoad.run(
      {
        url: options.url,
        apiKey,
        model: options.model,
        workload,
        concurrency: options.concurrency,
        requests: options.requests,
        warmupRequests: options.warmup ?? options.concurrency,
        timeoutMs: options.timeout,
        returnDocuments: options.returnDocuments,
        onProgress: progressLog(options.json, logLine),
      },
      this.client(options),
    );
    result.documentTokens = documentTokens;
    this.report(result, options.json, formatRerankRun);
  }

  /** The result as text or --json on stdout; exit status 1 when no request succeeded. */
  private report<R extends { ok: number }>(
    result: R,
    json: boolean | undefined,
    format: (result: R) => string,
  ) {
    process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${format(result)}\n`);
    if (result.ok === 0) process.exitCode = 1;
  }

  private client(options: BenchOptions): FetchLike {
    return options.client === 'fetch' ? fetch : keepAliveFetch(options.concurrency);
  }

  @Option({
    flags: '--task <embed|rerank>',
    description:
      'embed: POST /v1/embeddings (default); rerank: POST /v1/rerank, one query against --documents',
    defaultValue: 'embed',
  })
  parseTask(value: string): BenchTask {
    return parseChoice('--task', value, ['embed', 'rerank'] as const);
  }

  @Option({ flags: '--url <url>', description: 'server base URL, e.g. http://localhost:6008' })
  parseUrl(value: string): string {
    return parseServerUrl(value);
  }

  @Option(API_KEY_OPTION)
  parseApiKey(value: string): string {
    return value;
  }

  @Option({ flags: '--model <name>', description: 'model name to send' })
  parseModel(value: string): string {
    return value;
  }

  @Option({ flags: '--concurrency <n>', description: 'requests in flight', defaultValue: 8 })
  parseConcurrency(value: string): number {
    return parseInteger('--concurrency', value, 1, 4096);
  }

  @Option({ flags: '--requests <n>', description: 'measured requests', defaultValue: 200 })
  parseRequests(value: string): number {
    return parseInteger('--requests', value, 1);
  }

  @Option({ flags: '--warmup <n>', description: 'requests before measuring (default: concurrency)' })
  parseWarmup(value: string): number {
    return parseInteger('--warmup', value, 0);
  }

  @Option({
    flags: '--corpus <file|builtin>',
    description:
      'texts: .txt (a line each), .jsonl, .json, or builtin; with --task rerank also a {"groups": [...]} .json workload',
    defaultValue: 'builtin',
  })
  parseCorpus(value: string): string {
    return value;
  }

  @Option({
    flags: '--corpus-size <n>',
    description: 'embed: texts in the builtin corpus',
    defaultValue: 1000,
  })
  parseCorpusSize(value: string): number {
    return parseInteger('--corpus-size', value, 1);
  }

  @Option({
    flags: '--write-corpus <file>',
    description:
      'write the corpus as JSONL (for baseline_bench.py), or with --task rerank the workload as JSON (for rerank_baseline.py); runs only with --url',
  })
  parseWriteCorpus(value: string): string {
    return value;
  }

  @Option({
    flags: '--documents <n>',
    description: 'rerank: documents per request (builtin passages, or the first N texts of a --corpus file)',
    defaultValue: 100,
  })
  parseDocuments(value: string): number {
    return parseInteger('--documents', value, 1, 100000);
  }

  @Option({
    flags: '--doc-tokens <n>',
    description: 'rerank: tokens per builtin passage (Qwen3 tokenizer, before the template)',
    defaultValue: 300,
  })
  parseDocTokens(value: string): number {
    return parseInteger('--doc-tokens', value, 8, 8192);
  }

  @Option({ flags: '--query <text>', description: 'rerank: the query (default: the builtin one)' })
  parseQuery(value: string): string {
    return value;
  }

  @Option({
    flags: '--instruction <task>',
    description: "rerank: custom instruction (default: the server's)",
  })
  parseInstruction(value: string): string {
    return value;
  }

  @Option({
    flags: '--return-documents',
    description: 'rerank: ask for the documents back (default: return_documents false)',
  })
  parseReturnDocuments(): boolean {
    return true;
  }

  @Option({ flags: '--batch <n>', description: 'embed: inputs per request', defaultValue: 1 })
  parseBatch(value: string): number {
    return parseInteger('--batch', value, 1, 2048);
  }

  @Option({ flags: '--dimensions <n>', description: 'embed: Matryoshka output size' })
  parseDimensions(value: string): number {
    return parseInteger('--dimensions', value, 1);
  }

  @Option({ flags: '--input-type <type>', description: 'embed: query or document' })
  parseInputType(value: string): 'query' | 'document' {
    return parseChoice('--input-type', value, ['query', 'document'] as const);
  }

  @Option({
    flags: '--encoding <format>',
    description: 'float or base64 (default: base64, as the OpenAI SDKs)',
    defaultValue: 'base64',
  })
  parseEncoding(value: string): 'float' | 'base64' {
    return parseChoice('--encoding', value, ['float', 'base64'] as const);
  }

  @Option({
    flags: '--client <http|fetch>',
    description:
      "http: node:http with keep-alive connections (default); fetch: Node's global fetch, as the OpenAI SDK uses, which adds its own time to each request",
    defaultValue: 'http',
  })
  parseClient(value: string): BenchClient {
    return parseChoice('--client', value, ['http', 'fetch'] as const);
  }

  @Option({ flags: '--timeout <ms>', description: 'per-request timeout', defaultValue: 120000 })
  parseTimeout(value: string): number {
    return parseInteger('--timeout', value, 1);
  }

  @Option({ flags: '--json', description: 'print the result as JSON' })
  parseJson(): boolean {
    return true;
  }
}
