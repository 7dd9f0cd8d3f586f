import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { PATH_METADATA } from '@nestjs/common/constants';
import * as ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { IS_PUBLIC_KEY } from '@app/auth/public.decorator';
import { loadAppConfig } from '@app/config';
import { HealthController } from '@app/health/health.controller';
import { MetricsController } from '@app/metrics/metrics.controller';
import { MetricsService } from '@app/metrics/metrics.service';

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are untyped YAML */
type Manifest = Record<string, any>;

const ROOT = resolve(__dirname, '..');
const KUBECTL = join(ROOT, '.tools/kubectl-v1.32.3/kubectl'); // `make k8s-tools`
const OVERLAYS = ['cpu', 'gpu'] as const;
const DOCS = join(ROOT, 'docs/deploy.md');

function renderDir(dir: string): Manifest[] {
  if (!existsSync(KUBECTL)) throw new Error(`${KUBECTL} is missing: run \`make k8s-tools\``);
  const text = execFileSync(KUBECTL, ['kustomize', dir], { encoding: 'utf8' });
  return parseAllDocuments(text).map((document) => document.toJS() as Manifest);
}

const render = (overlay: string): Manifest[] => renderDir(join(ROOT, 'deploy/overlays', overlay));

/**
 * An overlay with one more component, as a user adds it: a copy of the overlay beside it (kustomize
 * takes only relative paths, and components must run before the overlay's image transformer).
 */
function renderWithComponent(overlay: string, component: string): Manifest[] {
  const dir = mkdtempSync(join(ROOT, 'deploy/overlays/.spec-'));
  try {
    cpSync(join(ROOT, 'deploy/overlays', overlay), dir, { recursive: true });
    const kustomization = join(dir, 'kustomization.yaml');
    const text = readFileSync(kustomization, 'utf8');
    expect(text).toContain('components:\n');
    writeFileSync(
      kustomization,
      text.replace('components:\n', `components:\n  - ../../components/${component}\n`),
    );
    return renderDir(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The model packages are ES modules only: Node's own require loads them (require(esm), Node >= 20.19);
// jest's module registry (and its stand-in for node:module) cannot.
const nodeRequire = (process.getBuiltinModule('node:module') as typeof import('node:module')).createRequire(
  __filename,
);
const MODEL_PACKAGES: Record<string, string> = {
  'keda.sh': '@kubernetes-models/keda',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
};

/** Where an object's model lives: kubernetes-models for built-in kinds, a CRD package otherwise. */
function modelModule(object: Manifest): { specifier: string; file: string } {
  const [group, version] = object.apiVersion.includes('/')
    ? object.apiVersion.split('/')
    : ['', object.apiVersion];
  const pkg = MODEL_PACKAGES[group] ?? 'kubernetes-models';
  const specifier = posix.join(pkg, group, version, object.kind);
  return { specifier, file: join(ROOT, 'node_modules', `${specifier}.js`) };
}

/** The kubernetes-models class for an object's apiVersion and kind: built-in schemas or a CRD's. */
function modelOf(object: Manifest): { validate(): void } {
  const { file } = modelModule(object);
  if (!existsSync(file)) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  const Model = nodeRequire(file)[object.kind];
  return new Model(object);
}

/**
 * Type-checks objects against the models' TypeScript interfaces. The JSON schemas accept fields they do
 * not know; TypeScript's excess-property check on object literals rejects them (a misspelt probe, a
 * field at the wrong level). Returns the compiler's messages.
 */
function unknownFields(objects: Manifest[]): string[] {
  const file = join(ROOT, 'deploy', '__rendered__.ts'); // in memory only: resolves node_modules from here
  const source = objects
    .map((object, i) => {
      const type = `import type { I${object.kind} as T${i} } from '${modelModule(object).specifier}';`;
      return `${type}\nexport const o${i}: T${i} = ${JSON.stringify(object)};`;
    })
    .join('\n');
  const options: ts.CompilerOptions = {
    noEmit: true,
    strict: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFile(name));
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
}

function route(controller: object, method: string): string {
  const base: string = Reflect.getMetadata(PATH_METADATA, controller);
  const path: string = Reflect.getMetadata(PATH_METADATA, (controller as any).prototype[method]);
  return posix.join('/', base, path === '/' ? '' : path);
}

function isPublic(controller: object, method: string): boolean {
  return Boolean(
    Reflect.getMetadata(IS_PUBLIC_KEY, controller) ??
    Reflect.getMetadata(IS_PUBLIC_KEY, (controller as any).prototype[method]),
  );
}

const ROUTES = {
  ready: route(HealthController, 'ready'),
  live: route(HealthController, 'live'),
  metrics: route(MetricsController, 'render'),
};

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([key, value]) => labels[key] === value);

describe.each(OVERLAYS)('deploy/overlays/%s', (overlay) => {
  let objects: Manifest[];
  let deployment: Manifest;
  let pod: Manifest;
  let api: Manifest;
  let keysDir: string;
  const one = (kind: string, name?: string) => {
    const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
    expect(found).toHaveLength(1);
    return found[0];
  };
  const env = () => Object.fromEntries(api.env.map((e: Manifest) => [e.name, e.value as string]));
  const mountOf = (path: string) =>
    api.volumeMounts
      .filter((m: Manifest) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
      .sort((a: Manifest, b: Manifest) => b.mountPath.length - a.mountPath.length)[0];
  const volume = (name: string) => pod.volumes.find((v: Manifest) => v.name === name);

  beforeAll(() => {
    objects = render(overlay);
    deployment = one('Deployment', 'qwen3-embed');
    pod = deployment.spec.template.spec;
    api = pod.containers.find((c: Manifest) => c.name === 'api');
    keysDir = mkdtempSync(join(tmpdir(), 'deploy-spec-'));
  });
  afterAll(() => rmSync(keysDir, { recursive: true, force: true }));

  it('renders only objects that validate against the Kubernetes (and KEDA, Prometheus Operator) schemas', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'Deployment',
      'Namespace',
      'PersistentVolumeClaim',
      'PodDisruptionBudget',
      'ScaledObject',
      'Service',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    for (const object of objects) {
      expect(() => modelOf(object).validate()).not.toThrow();
    }
    for (const object of objects) {
      if (object.kind !== 'Namespace') expect(object.metadata.namespace).toBe(one('Namespace').metadata.name);
      expect(object.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'qwen3-embed' });
    }
  });

  it('the schema check has teeth: a wrong type or a missing required field fails', () => {
    const broken = structuredClone(deployment);
    broken.spec.template.spec.containers[0].readinessProbe.periodSeconds = '5';
    expect(() => modelOf(broken).validate()).toThrow(/periodSeconds must be integer/);
    const noTarget = structuredClone(one('ScaledObject'));
    delete noTarget.spec.scaleTargetRef;
    expect(() => modelOf(noTarget).validate()).toThrow(/scaleTargetRef/);
  });

  it('probes the public health routes the app serves, on the port it listens on', () => {
    expect(api.startupProbe.httpGet.path).toBe(ROUTES.ready);
    expect(api.readinessProbe.httpGet.path).toBe(ROUTES.ready);
    expect(api.livenessProbe.httpGet.path).toBe(ROUTES.live);
    expect(ROUTES).toEqual({ ready: '/health/ready', live: '/health/live', metrics: '/metrics' });
    expect(isPublic(HealthController, 'ready')).toBe(true);
    expect(isPublic(MetricsController, 'render')).toBe(true);

    const keysFile = join(keysDir, 'api-keys');
    writeFileSync(keysFile, 'sk-deploy-spec\n');
    // The container's environment passes the app's own validation (the keys file is the Secret's).
    const config = loadAppConfig({ ...env(), API_KEYS_FILE: keysFile });
    const http = api.ports.find((p: Manifest) => p.name === 'http');
    expect(http.containerPort).toBe(config.server.port);
    for (const probe of [api.startupProbe, api.readinessProbe, api.livenessProbe]) {
      expect(probe.httpGet.port).toBe('http');
    }
    expect(Number(deployment.spec.template.metadata.annotations['prometheus.io/port'])).toBe(
      config.server.port,
    );
    expect(deployment.spec.template.metadata.annotations['prometheus.io/path']).toBe(ROUTES.metrics);
    // The startup probe allows a long model load; liveness only begins after it.
    expect(api.startupProbe.periodSeconds * api.startupProbe.failureThreshold).toBeGreaterThanOrEqual(300);
  });

  it('gives SIGTERM a grace period longer than preStop + SHUTDOWN_TIMEOUT_MS + 5 s', () => {
    const config = loadAppConfig({ ...env(), API_KEYS_FILE: undefined, AUTH_DISABLED: 'true' });
    const preStop = api.lifecycle.preStop.sleep.seconds;
    expect(preStop).toBeGreaterThanOrEqual(5);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
      preStop + config.server.shutdownTimeoutMs / 1000 + 5,
    );
  });

  it('reads API keys from a Secret mounted read-only as API_KEYS_FILE', () => {
    const mount = mountOf(env().API_KEYS_FILE);
    expect(mount.readOnly).toBe(true);
    expect(posix.dirname(env().API_KEYS_FILE)).toBe(mount.mountPath);
    expect(volume(mount.name).secret.secretName).toBe('qwen3-embed-api-keys');
    expect(env().API_KEY).toBeUndefined(); // no key in the manifests
  });

  it('loads the model from the PVC, read-only', () => {
    const mount = mountOf(env().MODEL_PATH);
    expect(mount.readOnly).toBe(true);
    const claim = volume(mount.name).persistentVolumeClaim.claimName;
    expect(one('PersistentVolumeClaim', claim).spec.accessModes).toContain('ReadOnlyMany');
  });

  it('runs as non-root on a read-only root filesystem with a writable /tmp', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(api.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(volume(mountOf('/tmp').name).emptyDir).toBeDefined();
  });

  it('wires Services, PDB and ServiceMonitor to the pods by labels and port names', () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(matches(deployment.spec.selector.matchLabels, labels)).toBe(true);
    const services = objects.filter((o) => o.kind === 'Service');
    for (const service of services) {
      expect(matches(service.spec.selector, labels)).toBe(true);
      for (const port of service.spec.ports) {
        expect(api.ports.map((p: Manifest) => p.name)).toContain(port.targetPort);
      }
    }
    expect(one('Service', 'qwen3-embed-pods').spec.clusterIP).toBe('None');
    expect(matches(one('PodDisruptionBudget').spec.selector.matchLabels, labels)).toBe(true);

    const monitor = one('ServiceMonitor');
    const scraped = services.filter((s) => matches(monitor.spec.selector.matchLabels, s.metadata.labels));
    expect(scraped.map((s) => s.metadata.name)).toEqual(['qwen3-embed']); // each pod scraped once
    expect(monitor.spec.endpoints).toHaveLength(1);
    expect(scraped[0].spec.ports.map((p: Manifest) => p.name)).toContain(monitor.spec.endpoints[0].port);
    expect(monitor.spec.endpoints[0].path).toBe(ROUTES.metrics);
  });

  it('autoscales with KEDA on a queue metric that /metrics really exports', async () => {
    const scaled = one('ScaledObject');
    expect(scaled.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    expect(deployment.spec.replicas).toBeUndefined(); // KEDA owns the count
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(2); // with the PDB, a drain keeps one serving
    const [trigger] = scaled.spec.triggers;
    expect(trigger.type).toBe('prometheus');
    expect(Number(trigger.metadata.threshold)).toBeGreaterThan(0);

    const query: string = trigger.metadata.query;
    const metric = /([a-z_:][a-z0-9_:]*)\{/.exec(query)![1];
    expect(metric).toBe('qwen3_embed_queue_tokens');
    const exported = await new MetricsService().render();
    expect(exported).toMatch(new RegExp(`^# TYPE ${metric} gauge$`, 'm'));
    // The series the ServiceMonitor produces: job = the Service's name, in the overlay's namespace.
    expect(query).toContain(`namespace="${deployment.metadata.namespace}"`);
    expect(query).toContain(`job="${one('ServiceMonitor').metadata.name}"`);
  });

  if (overlay === 'gpu') {
    it('requests GPUs consistently with TENSOR_PARALLEL_SIZE, with shared memory for NCCL', () => {
      const gpus = Number(api.resources.limits['nvidia.com/gpu']);
      expect(gpus).toBeGreaterThanOrEqual(1);
      expect(api.resources.requests['nvidia.com/gpu']).toBe(api.resources.limits['nvidia.com/gpu']);
      const config = loadAppConfig({ ...env(), API_KEYS_FILE: undefined, AUTH_DISABLED: 'true' });
      expect(config.model.device).toBe('cuda');
      expect(gpus % (config.model.tensorParallelSize ?? gpus)).toBe(0);
      const shm = volume(mountOf('/dev/shm').name);
      expect(mountOf('/dev/shm').mountPath).toBe('/dev/shm');
      expect(shm.emptyDir.medium).toBe('Memory');
      expect(pod.tolerations).toContainEqual(expect.objectContaining({ key: 'nvidia.com/gpu' }));
    });
  } else {
    it('runs on the CPU with as many compute threads as cores it is given', () => {
      const config = loadAppConfig({ ...env(), API_KEYS_FILE: undefined, AUTH_DISABLED: 'true' });
      expect(config.model.device).toBe('cpu');
      expect(api.resources.limits['nvidia.com/gpu']).toBeUndefined();
      expect(config.model.cpuThreads).toBe(Number(api.resources.limits.cpu));
    });
  }
});

describe('every rendered object (both overlays, and gpu with model-copy)', () => {
  it('uses only fields the Kubernetes, KEDA and Prometheus Operator APIs define', () => {
    const objects = [...render('cpu'), ...render('gpu'), ...renderWithComponent('gpu', 'model-copy')];
    // And one misspelt field, to show the check catches it.
    const typo = structuredClone(objects.find((o) => o.kind === 'Deployment')!);
    typo.spec.template.spec.containers[0].readinessProbes =
      typo.spec.template.spec.containers[0].readinessProbe;
    expect(unknownFields([...objects, typo])).toEqual([
      expect.stringMatching(/'"readinessProbes"' does not exist in type 'IContainer'/),
    ]);
  }, 60_000);
});

describe('deploy/components/model-copy (optional)', () => {
  it('copies the checkpoint MODEL_PATH names from the PVC to a node-local emptyDir before the API starts', () => {
    const objects = renderWithComponent('gpu', 'model-copy');
    for (const object of objects) expect(() => modelOf(object).validate()).not.toThrow();
    const pod = objects.find((o) => o.kind === 'Deployment')!.spec.template.spec;
    const api = pod.containers.find((c: Manifest) => c.name === 'api');
    const [copy] = pod.initContainers;
    const env = (container: Manifest, name: string) =>
      container.env.find((e: Manifest) => e.name === name).value;
    const volume = (name: string) => pod.volumes.find((v: Manifest) => v.name === name);
    const mount = (container: Manifest, path: string) =>
      container.volumeMounts.find((m: Manifest) => m.mountPath === path);

    expect(copy.image).toBe(api.image);
    expect(env(copy, 'MODEL_PATH')).toBe(env(api, 'MODEL_PATH'));
    const modelsDir = posix.dirname(env(api, 'MODEL_PATH'));
    expect(mount(api, modelsDir).name).toBe(mount(copy, modelsDir).name);
    expect(volume(mount(api, modelsDir).name)).toEqual(
      expect.objectContaining({ emptyDir: expect.anything() }),
    );
    expect(volume(mount(api, modelsDir).name).persistentVolumeClaim).toBeUndefined();
    const source = copy.volumeMounts.find((m: Manifest) => m.mountPath === '/model-source');
    expect(source.readOnly).toBe(true);
    expect(volume(source.name).persistentVolumeClaim.claimName).toBe('qwen3-embed-models');
    expect(copy.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
    });
  });
});

describe('docker/compose.yml with docker/nginx/nginx.conf', () => {
  const nginxConf = readFileSync(join(ROOT, 'docker/nginx/nginx.conf'), 'utf8');
  const compose = parseAllDocuments(readFileSync(join(ROOT, 'docker/compose.yml'), 'utf8'), {
    merge: true,
  })[0].toJS() as Manifest;
  /** The api service's environment as compose gives it with nothing set: `${X:-default}` is default. */
  const apiConfig = () =>
    loadAppConfig(
      Object.fromEntries(
        Object.entries(compose.services.api.environment as Record<string, unknown>).map(([name, value]) => [
          name,
          String(value).replace(/\$\{\w+:([-?])([^}]*)\}/g, (_, kind: string, rest: string) =>
            kind === '-' ? rest : 'set-by-the-user',
          ),
        ]),
      ),
    );

  it('points nginx at the api service, re-resolved through Docker DNS by an nginx that can', () => {
    const [, host, port, parameters] = /^\s*server ([\w.-]+):(\d+)([^;]*);/m.exec(nginxConf)!;
    expect(host).toBe('api');
    expect(compose.services.api.expose).toContain(port);
    expect(apiConfig().server.port).toBe(Number(port));
    // `resolve` needs a shared zone, a resolver, and open-source Nginx >= 1.27.3.
    expect(parameters).toMatch(/\bresolve\b/);
    expect(nginxConf).toMatch(/^\s*zone embeddings_api \w+;/m);
    expect(nginxConf).toMatch(/^\s*resolver 127\.0\.0\.11 valid=\d+s/m);
    const [, major, minor] = /^nginx:(\d+)\.(\d+)/.exec(compose.services.nginx.image)!.map(Number);
    expect(major * 1000 + minor).toBeGreaterThanOrEqual(1028); // 1.27.3 was mainline; 1.28 is its stable
  });

  it('stops a replica only after its drain (SHUTDOWN_TIMEOUT_MS + 5 s)', () => {
    const grace = Number(/^(\d+)s$/.exec(compose.services.api.stop_grace_period)![1]);
    expect(grace).toBeGreaterThan(apiConfig().server.shutdownTimeoutMs / 1000 + 5);
  });
});

describe('docs/deploy.md', () => {
  it('shows the rendered objects exactly as the overlays render them', () => {
    // Each block follows a marker `<!-- rendered: OVERLAY KIND NAME -->`.
    const docs = readFileSync(DOCS, 'utf8');
    const blocks = [...docs.matchAll(/<!-- rendered: (\w+) (\w+) ([\w-]+) -->\s*```yaml\n([\s\S]*?)```/g)];
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const rendered = Object.fromEntries(OVERLAYS.map((overlay) => [overlay, render(overlay)]));
    for (const [, overlay, kind, name, yaml] of blocks) {
      const object = rendered[overlay]?.find((o) => o.kind === kind && o.metadata.name === name);
      expect({ overlay, kind, name, object: parseAllDocuments(yaml)[0].toJS() }).toEqual({
        overlay,
        kind,
        name,
        object,
      });
    }
  });
});
