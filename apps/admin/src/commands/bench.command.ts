import { Command, CommandRunner, Option } from 'nest-commander';
import { builtinCorpus, loadCorpus, writeCorpus } from '../bench/bench-corpus';
import { BenchClient, keepAliveFetch } from '../bench/http-client';
import { formatLoadRun, LoadGenerator } from '../bench/load-generator';
import { parseChoice, parseInteger } from './option-parsers';

interface BenchOptions {
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
}

@Command({
  name: 'bench',
  description:
    'load-test POST /v1/embeddings: throughput (req/s, embeddings/s, tokens/s) and latency p50/p90/p99',
})
export class BenchCommand extends CommandRunner {
  constructor(private readonly load: LoadGenerator) {
    super();
  }

  async run(_params: string[], options: BenchOptions): Promise<void> {
    if (options.writeCorpus) {
      const texts =
        options.corpus === 'builtin' ? builtinCorpus(options.corpusSize) : await loadCorpus(options.corpus);
      await writeCorpus(options.writeCorpus, texts);
      process.stdout.write(`wrote ${texts.length} texts to ${options.writeCorpus}\n`);
      if (!options.url) return;
    }
    if (!options.url) throw new Error('--url is required (e.g. --url http://localhost:6008)');
    const texts = await loadCorpus(options.corpus, options.corpusSize);
    const log = (line: string): void => {
      process.stderr.write(`${line}\n`);
    };
    log(
      `bench: ${options.requests} requests of ${options.batch} input(s) from ${texts.length} texts, concurrency ${options.concurrency}`,
    );
    let lastShown = 0;
    const client = options.client === 'fetch' ? fetch : keepAliveFetch(options.concurrency);
    const result = await this.load.run(
      {
        url: options.url,
        apiKey: options.apiKey,
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
        onProgress: (done, total) => {
          const now = Date.now();
          if (!options.json && (now - lastShown > 2000 || done === total)) {
            lastShown = now;
            log(`  ${done}/${total}`);
          }
        },
      },
      client,
    );
    process.stdout.write(
      options.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatLoadRun(result)}\n`,
    );
    if (result.ok === 0) process.exitCode = 1;
  }

  @Option({ flags: '--url <url>', description: 'server base URL, e.g. http://localhost:6008' })
  parseUrl(value: string): string {
    return new URL(value).toString();
  }

  @Option({ flags: '--api-key <key>', description: 'bearer key', env: 'API_KEY' })
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
    description: 'texts: .txt (a line each), .jsonl, .json, or builtin',
    defaultValue: 'builtin',
  })
  parseCorpus(value: string): string {
    return value;
  }

  @Option({ flags: '--corpus-size <n>', description: 'texts in the builtin corpus', defaultValue: 1000 })
  parseCorpusSize(value: string): number {
    return parseInteger('--corpus-size', value, 1);
  }

  @Option({
    flags: '--write-corpus <file>',
    description: 'write the corpus as JSONL (for baseline_bench.py); runs only with --url',
  })
  parseWriteCorpus(value: string): string {
    return value;
  }

  @Option({ flags: '--batch <n>', description: 'inputs per request', defaultValue: 1 })
  parseBatch(value: string): number {
    return parseInteger('--batch', value, 1, 2048);
  }

  @Option({ flags: '--dimensions <n>', description: 'Matryoshka output size' })
  parseDimensions(value: string): number {
    return parseInteger('--dimensions', value, 1);
  }

  @Option({ flags: '--input-type <type>', description: 'query or document' })
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
