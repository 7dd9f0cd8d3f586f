import { createHash } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

/** One file of a test repository; `lfs` files are served the way the Hub serves LFS (302 to a CDN). */
export interface HubTestFile {
  path: string;
  content: Buffer;
  lfs: boolean;
  /** Listed in the tree with this size instead of its own (to test the free-space check). */
  listedSize?: number;
}

export interface HubTestRepository {
  id: string;
  commit: string;
  files: HubTestFile[];
  /**
   * Gated, as on the Hub: metadata is public, file downloads answer 401 GatedRepo without
   * `Authorization: Bearer <token>`; any other token is refused everywhere (401).
   */
  token?: string;
  /** A valid token of an account that has not been granted access: downloads answer 403 GatedRepo. */
  ungrantedToken?: string;
}

export interface HubTestFaults {
  /** Cut the connection of the next full download of `path` after `bytes` bytes. */
  cut?: { path: string; bytes: number };
  /** Serve `path` with one byte changed (same size: only a checksum notices). */
  corrupt?: string;
  /** The CDN answers the next request for `path` with 403, as for a signed URL that expired. */
  expire?: string;
  /** Hold full downloads of `path` until `open` resolves (to watch the server while it downloads). */
  gate?: { path: string; open: Promise<void> };
}

export interface HubTestRequest {
  method: string;
  url: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes sent (for a cut response, what went out before the cut). */
  bytes: number;
  /** The repository file a resolve or CDN request was for. */
  file?: string;
}

const LFS_MIN_BYTES = 1024 * 1024;

function gitBlobId(content: Buffer | string): string {
  const bytes = Buffer.from(content);
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

/** The files of a checkpoint directory as a repository: weights and large files go through LFS. */
export async function repositoryFiles(dir: string): Promise<HubTestFile[]> {
  const files: HubTestFile[] = [];
  const walk = async (current: string): Promise<void> => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) {
        await walk(full);
      } else {
        const content = await readFile(full);
        const path = relative(dir, full);
        files.push({
          path,
          content,
          lfs: path.endsWith('.safetensors') || (await stat(full)).size >= LFS_MIN_BYTES,
        });
      }
    }
  };
  await walk(dir);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * A stand-in for huggingface.co on 127.0.0.1, for tests: the routes @huggingface/hub calls
 * (`/api/models/{id}/revision/{rev}`, `/api/models/{id}/tree/{rev}`, `/{id}/resolve/{rev}/{path}`), with
 * the Hub's headers (ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag, X-Error-Code), LFS files
 * redirected (302) to a CDN on another origin (another port) that honours Range, and injectable faults.
 */
export class HubTestServer {
  readonly requests: HubTestRequest[] = [];
  faults: HubTestFaults = {};
  private readonly repositories = new Map<string, HubTestRepository>();

  private constructor(
    private readonly servers: Server[],
    readonly url: string,
    readonly cdnUrl: string,
  ) {}

  static async start(repositories: HubTestRepository[]): Promise<HubTestServer> {
    const listen = async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    };
    const hub = await listen();
    const cdn = await listen();
    const instance = new HubTestServer([hub.server, cdn.server], hub.url, cdn.url);
    for (const { server, url } of [hub, cdn]) {
      server.on('request', (req: IncomingMessage, res: ServerResponse) => instance.handle(req, res, url));
    }
    for (const repository of repositories) instance.repositories.set(repository.id, repository);
    return instance;
  }

  /** Body bytes sent for one repository file (resolve and CDN requests together). */
  bytesServed(path: string): number {
    return this.requests.filter((r) => r.file === path).reduce((sum, r) => sum + r.bytes, 0);
  }

  async close(): Promise<void> {
    for (const server of this.servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse, origin: string): void {
    const url = new URL(req.url ?? '/', origin);
    const cdn = origin === this.cdnUrl;
    const record: HubTestRequest = {
      method: req.method ?? 'GET',
      url: url.pathname + url.search,
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bytes: 0,
    };
    this.requests.push(record);
    res.on('close', () => (record.status = res.statusCode));
    const path = decodeURIComponent(url.pathname);
    let match: RegExpExecArray | null;
    if (cdn !== path.startsWith('/cdn/')) {
      this.error(res, 404, undefined, 'not found');
    } else if ((match = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path))) {
      const repository = this.authorize(match[1], req, res);
      if (repository && this.checkRevision(repository, match[2], res)) {
        this.json(res, 200, {
          _id: repository.commit.slice(0, 24),
          id: repository.id,
          sha: repository.commit,
          private: false,
          gated: repository.token ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2026-01-01T00:00:00.000Z',
          pipeline_tag: 'feature-extraction',
          siblings: repository.files.map((file) => ({ rfilename: file.path })),
        });
      }
    } else if ((match = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path))) {
      const repository = this.authorize(match[1], req, res);
      if (repository && this.checkRevision(repository, match[2], res)) {
        this.json(res, 200, this.tree(repository));
      }
    } else if ((match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path))) {
      const repository = this.authorize(match[1], req, res, true);
      if (repository && this.checkRevision(repository, match[2], res)) {
        const file = repository.files.find((candidate) => candidate.path === match![3]);
        record.file = file?.path;
        if (!file) {
          this.error(res, 404, 'EntryNotFound', 'Entry not found');
        } else if (file.lfs) {
          const sha = sha256(file.content);
          res.writeHead(302, {
            Location: `${this.cdnUrl}/cdn/${sha}?repo=${encodeURIComponent(repository.id)}&path=${encodeURIComponent(file.path)}`,
            ETag: `"${gitBlobId(this.pointer(file))}"`,
            'X-Linked-Etag': `"${sha}"`,
            'X-Linked-Size': String(file.content.length),
            'X-Repo-Commit': repository.commit,
          });
          res.end();
        } else {
          this.serveBytes(req, res, record, file, {
            ETag: `"${gitBlobId(file.content)}"`,
            'X-Repo-Commit': repository.commit,
          });
        }
      }
    } else if ((match = /^\/cdn\/([0-9a-f]{64})$/.exec(path))) {
      const repository = this.repositories.get(url.searchParams.get('repo') ?? '');
      const file = repository?.files.find((candidate) => candidate.path === url.searchParams.get('path'));
      if (!file || sha256(file.content) !== match[1]) {
        this.error(res, 404, undefined, 'no such object');
      } else {
        record.file = file.path;
        if (this.faults.expire === file.path && req.headers.range !== 'bytes=0-0') {
          this.faults.expire = undefined;
          res.writeHead(403, { 'Content-Type': 'application/xml' });
          res.end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
          return;
        }
        this.serveBytes(req, res, record, file, { ETag: `"${match[1]}"` });
      }
    } else {
      this.error(res, 404, undefined, 'not found');
    }
  }

  private authorize(
    id: string,
    req: IncomingMessage,
    res: ServerResponse,
    download = false,
  ): HubTestRepository | undefined {
    const repository = this.repositories.get(id);
    if (!repository) {
      this.error(res, 404, 'RepositoryNotFound', 'Repository not found');
      return undefined;
    }
    if (repository.token) {
      const auth = req.headers.authorization;
      if (!auth && download) {
        this.error(
          res,
          401,
          'GatedRepo',
          `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        );
        return undefined;
      }
      if (auth === `Bearer ${repository.ungrantedToken}` && download) {
        this.error(
          res,
          403,
          'GatedRepo',
          `Access to model ${id} is restricted and you are not in the authorized list.`,
        );
        return undefined;
      }
      if (auth && auth !== `Bearer ${repository.token}` && auth !== `Bearer ${repository.ungrantedToken}`) {
        this.error(res, 401, undefined, 'Invalid credentials in Authorization header');
        return undefined;
      }
    }
    return repository;
  }

  private checkRevision(repository: HubTestRepository, revision: string, res: ServerResponse): boolean {
    if (revision === 'main' || revision === 'HEAD' || revision === repository.commit) return true;
    this.error(res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    return false;
  }

  private tree(repository: HubTestRepository): unknown[] {
    const directories = new Set<string>();
    for (const file of repository.files) {
      const parts = file.path.split('/').slice(0, -1);
      parts.forEach((_, index) => directories.add(parts.slice(0, index + 1).join('/')));
    }
    return [
      ...[...directories].map((path) => ({ type: 'directory', oid: gitBlobId(path), size: 0, path })),
      ...repository.files.map((file) =>
        file.lfs
          ? {
              type: 'file',
              oid: gitBlobId(this.pointer(file)),
              size: file.listedSize ?? file.content.length,
              path: file.path,
              lfs: {
                oid: sha256(file.content),
                size: file.listedSize ?? file.content.length,
                pointerSize: this.pointer(file).length,
              },
            }
          : { type: 'file', oid: gitBlobId(file.content), size: file.content.length, path: file.path },
      ),
    ];
  }

  private pointer(file: HubTestFile): string {
    return `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(file.content)}\nsize ${file.content.length}\n`;
  }

  private serveBytes(
    req: IncomingMessage,
    res: ServerResponse,
    record: HubTestRequest,
    file: HubTestFile,
    headers: Record<string, string>,
  ): void {
    let content = file.content;
    if (this.faults.corrupt === file.path) {
      content = Buffer.from(content);
      content[content.length >> 1] ^= 0xff;
    }
    const total = content.length;
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), total - 1) : total - 1;
      if (start >= total) {
        res.writeHead(416, { 'Content-Range': `bytes */${total}` });
        res.end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${total}`;
    }
    const body = content.subarray(start, end + 1);
    res.writeHead(status, {
      ...headers,
      'Accept-Ranges': 'bytes',
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(body.length),
    });
    const gate = this.faults.gate;
    if (gate && gate.path === file.path && body.length > 1) {
      void gate.open.then(() => this.send(res, record, file, body));
      return;
    }
    this.send(res, record, file, body);
  }

  private send(res: ServerResponse, record: HubTestRequest, file: HubTestFile, body: Buffer): void {
    const cut = this.faults.cut;
    if (cut && cut.path === file.path && body.length > cut.bytes) {
      this.faults.cut = undefined;
      record.bytes = cut.bytes;
      res.write(body.subarray(0, cut.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    record.bytes = body.length;
    res.end(body);
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private error(res: ServerResponse, status: number, code: string | undefined, message: string): void {
    res.writeHead(status, {
      'Content-Type': 'application/json',
      ...(code ? { 'X-Error-Code': code } : {}),
      'X-Error-Message': message,
    });
    res.end(JSON.stringify({ error: message }));
  }
}
