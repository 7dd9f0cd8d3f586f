import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Command, CommandRunner, Option } from 'nest-commander';
import { requestHeaders } from '@app/bench/closed-loop';
import { parseInteger } from './option-parsers';
import { API_KEY_OPTION, discoverApiKey, logLine, parseServerUrl } from './server-client';

interface RerankOptions {
  url: string;
  apiKey?: string;
  model?: string;
  query?: string;
  documentsFile?: string;
  topN?: number;
  instruction?: string;
  timeout: number;
  json?: boolean;
}

/** The parts of a POST /v1/rerank answer the table shows. */
export interface RerankAnswer {
  model?: string;
  results: Array<{ index: number; relevance_score: number; truncated?: boolean }>;
  usage?: { prompt_tokens?: number; total_tokens?: number };
}

/**
 * Documents from a file: a JSON array (of strings, or of objects with "text") when the file holds one,
 * else one document per non-empty line.
 */
export async function readDocumentsFile(path: string): Promise<string[]> {
  const content = await readFile(path, 'utf8');
  if (content.trimStart().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch (error) {
      throw new Error(`${path}: not a JSON array (${(error as Error).message})`);
    }
    if (!Array.isArray(parsed)) throw new Error(`${path}: expected a JSON array`);
    return parsed.map((item: unknown, index) => {
      if (typeof item === 'string') return item;
      const text = (item as { text?: unknown } | null)?.text;
      if (typeof text === 'string') return text;
      throw new Error(`${path}: item ${index} is neither a string nor an object with "text"`);
    });
  }
  return content.split(/\r?\n/).filter((line) => line.trim() !== '');
}

/** The ranked table: rank, the document's index, its relevance score and the start of its text. */
export function formatRerankTable(answer: RerankAnswer, documents: readonly string[], width = 100): string {
  const lines = [`${'rank'.padStart(4)}  ${'index'.padStart(5)}  ${'score'.padEnd(8)}  document`];
  const room = Math.max(20, width - 25);
  answer.results.forEach((result, rank) => {
    const flat = (documents[result.index] ?? '').replace(/\s+/g, ' ').trim();
    const shown = flat.length > room ? `${flat.slice(0, room - 3)}...` : flat;
    lines.push(
      `${String(rank + 1).padStart(4)}  ${String(result.index).padStart(5)}  ${result.relevance_score.toFixed(6)}  ${JSON.stringify(shown)}${result.truncated ? ' (truncated)' : ''}`,
    );
  });
  return lines.join('\n');
}

/** "400 invalid_request_error (model_task_mismatch): message" from an OpenAI-shaped error body. */
function describeFailure(status: number, body: string): string {
  try {
    const error = (JSON.parse(body) as { error?: { message?: string; type?: string; code?: string | null } })
      .error;
    if (error?.message) {
      return `${status} ${error.type ?? 'error'}${error.code ? ` (${error.code})` : ''}: ${error.message}`;
    }
  } catch {
    // not JSON: the raw body below
  }
  return `${status}: ${body.slice(0, 300)}`;
}

/**
 * Reranks documents against a query through a running server's POST /v1/rerank (the server owns the
 * prompt template and the model): prints the documents ranked by relevance, or the answer as JSON.
 */
@Command({
  name: 'rerank',
  arguments: '[document...]',
  description:
    'rerank documents against --query through a running server (POST /v1/rerank); documents as arguments and/or --documents-file',
})
export class RerankCommand extends CommandRunner {
  async run(params: string[], options: RerankOptions): Promise<void> {
    if (options.query === undefined) throw new Error('--query is required');
    const documents = [
      ...params,
      ...(options.documentsFile ? await readDocumentsFile(options.documentsFile) : []),
    ];
    if (documents.length === 0)
      throw new Error('no documents: give them as arguments or with --documents-file');
    const apiKey = options.apiKey ?? discoverApiKey('rerank', logLine, false);
    const body = {
      ...(options.model !== undefined ? { model: options.model } : {}),
      query: options.query,
      documents,
      ...(options.topN !== undefined ? { top_n: options.topN } : {}),
      ...(options.instruction !== undefined ? { instruction: options.instruction } : {}),
      // The table prints the texts it sent; --json gets them back so the answer stands alone.
      return_documents: options.json === true,
    };
    const endpoint = new URL('/v1/rerank', options.url).toString();
    const started = performance.now();
    let response: Response;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: requestHeaders(apiKey),
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeout),
      });
    } catch (error) {
      const reason = (error as { cause?: Error }).cause?.message ?? (error as Error).message;
      throw new Error(`POST ${endpoint} failed: ${reason} (is the server running? --url)`);
    }
    const text = await response.text();
    const ms = performance.now() - started;
    if (!response.ok) throw new Error(`POST ${endpoint}: ${describeFailure(response.status, text)}`);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(JSON.parse(text) as unknown, null, 2)}\n`);
      return;
    }
    const answer = JSON.parse(text) as RerankAnswer;
    if (!Array.isArray(answer.results)) throw new Error(`POST ${endpoint}: the answer has no results array`);
    process.stdout.write(
      `${answer.model ?? options.model ?? 'model'}: ${documents.length} document(s), ${answer.usage?.prompt_tokens ?? '?'} tokens, ${ms.toFixed(1)} ms\n` +
        `${formatRerankTable(answer, documents, process.stdout.columns ?? 100)}\n`,
    );
  }

  @Option({
    flags: '--url <url>',
    description: 'server base URL',
    defaultValue: 'http://localhost:6008',
  })
  parseUrl(value: string): string {
    return parseServerUrl(value);
  }

  @Option(API_KEY_OPTION)
  parseApiKey(value: string): string {
    return value;
  }

  @Option({ flags: '--model <name>', description: "model name to send (default: the server's)" })
  parseModel(value: string): string {
    return value;
  }

  @Option({ flags: '--query <text>', description: 'the query the documents are ranked against (required)' })
  parseQuery(value: string): string {
    return value;
  }

  @Option({
    flags: '--documents-file <file>',
    description: 'more documents: a JSON array (strings or {"text"}) or one document per line',
  })
  parseDocumentsFile(value: string): string {
    return value;
  }

  @Option({ flags: '--top-n <n>', description: 'return only the n most relevant' })
  parseTopN(value: string): number {
    return parseInteger('--top-n', value, 1);
  }

  @Option({
    flags: '--instruction <task>',
    description: "custom instruction (default: the server's, the model card's web search one)",
  })
  parseInstruction(value: string): string {
    return value;
  }

  @Option({ flags: '--timeout <ms>', description: 'request timeout', defaultValue: 120000 })
  parseTimeout(value: string): number {
    return parseInteger('--timeout', value, 1);
  }

  @Option({ flags: '--json', description: "print the server's answer (with the documents) as JSON" })
  parseJson(): boolean {
    return true;
  }
}
