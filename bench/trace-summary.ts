/**
 * Where one forward's GPU time goes: reads the Kineto trace that native/tests/forward_profile.cpp
 * writes (Chrome trace JSON) and reports, per GPU and per forward (the profiler's user scope
 * "forward"), the kernels launched, the time they ran (busy), the time from the first kernel's start
 * to the last one's end (span; span - busy is the GPU idle between kernels), and the busy time per
 * kind of kernel: matrix products, attention, all-reduce, the fused norm/rotary/SiLU kernels, the rest.
 *
 *   node dist/bench/trace-summary.js TRACE.json [--label tp2] [--top 12] [--json out.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export type KernelKind = 'gemm' | 'attention' | 'allreduce' | 'fused' | 'copy' | 'other';

export interface TraceEvent {
  name: string;
  cat?: string;
  ph?: string;
  ts: number;
  dur?: number;
  args?: Record<string, unknown>;
}

export interface DeviceSummary {
  device: number;
  forwards: number;
  /** Per forward: */
  kernels: number;
  busyUs: number;
  spanUs: number;
  byKind: Record<KernelKind, number>;
  top: { name: string; kind: KernelKind; perForward: number; avgUs: number; usPerForward: number }[];
}

const GPU_CATEGORIES = new Set(['kernel', 'gpu_memcpy', 'gpu_memset']);

export function kernelKind(name: string, cat = 'kernel'): KernelKind {
  if (cat !== 'kernel') return 'copy';
  if (/PeerAllReduce|nccl|all_?reduce/i.test(name)) return 'allreduce';
  if (/flash|fmha|attention/i.test(name)) return 'attention';
  if (/AddRmsNorm|QkNormRope|SiluMul/.test(name)) return 'fused';
  if (/gemm|gemv|cutlass|xmma|nvjet|cublas|splitK/i.test(name)) return 'gemm';
  return 'other';
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

export function summarizeTrace(events: readonly TraceEvent[], top = 12): DeviceSummary[] {
  const forwards = events
    .filter((e) => e.name === 'forward' && e.cat === 'user_annotation' && e.dur !== undefined)
    .sort((a, b) => a.ts - b.ts);
  if (forwards.length === 0) throw new Error('the trace has no "forward" user scope');
  const kernels = events.filter((e) => e.cat !== undefined && GPU_CATEGORIES.has(e.cat));
  const devices = new Map<number, TraceEvent[]>();
  for (const k of kernels) {
    const device = Number(k.args?.device ?? -1);
    const list = devices.get(device) ?? [];
    list.push(k);
    devices.set(device, list);
  }
  const inForward = (k: TraceEvent) => forwards.findIndex((f) => k.ts >= f.ts && k.ts <= f.ts + (f.dur ?? 0));

  return [...devices.entries()]
    .sort(([a], [b]) => a - b)
    .map(([device, list]) => {
      const n = forwards.length;
      const byKind: Record<KernelKind, number> = {
        gemm: 0,
        attention: 0,
        allreduce: 0,
        fused: 0,
        copy: 0,
        other: 0,
      };
      const first = new Array<number>(n).fill(Infinity);
      const last = new Array<number>(n).fill(-Infinity);
      const byName = new Map<string, { kind: KernelKind; count: number; us: number }>();
      let count = 0;
      let busy = 0;
      for (const k of list) {
        const f = inForward(k);
        if (f < 0) continue;
        const dur = k.dur ?? 0;
        const kind = kernelKind(k.name, k.cat);
        count += 1;
        busy += dur;
        byKind[kind] += dur;
        first[f] = Math.min(first[f], k.ts);
        last[f] = Math.max(last[f], k.ts + dur);
        const entry = byName.get(k.name) ?? { kind, count: 0, us: 0 };
        entry.count += 1;
        entry.us += dur;
        byName.set(k.name, entry);
      }
      const spans = first.map((start, i) => (Number.isFinite(start) ? last[i] - start : 0));
      for (const kind of Object.keys(byKind) as KernelKind[]) byKind[kind] = round(byKind[kind] / n);
      return {
        device,
        forwards: n,
        kernels: round(count / n),
        busyUs: round(busy / n),
        spanUs: round(spans.reduce((a, b) => a + b, 0) / n),
        byKind,
        top: [...byName.entries()]
          .sort(([, a], [, b]) => b.us - a.us)
          .slice(0, top)
          .map(([name, e]) => ({
            name: name.length > 90 ? `${name.slice(0, 87)}...` : name,
            kind: e.kind,
            perForward: round(e.count / n),
            avgUs: round(e.us / e.count),
            usPerForward: round(e.us / n),
          })),
      };
    });
}

export function formatSummary(label: string, summaries: readonly DeviceSummary[]): string {
  const lines = [
    `## ${label}`,
    '',
    '| GPU | kernels | busy us | span us | gemm | attention | all-reduce | fused | copy | other |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of summaries) {
    const k = s.byKind;
    lines.push(
      `| ${s.device} | ${s.kernels} | ${s.busyUs} | ${s.spanUs} | ${k.gemm} | ${k.attention} | ` +
        `${k.allreduce} | ${k.fused} | ${k.copy} | ${k.other} |`,
    );
  }
  const first = summaries[0];
  if (first !== undefined) {
    lines.push('', `Top kernels on GPU ${first.device} (per forward):`, '');
    lines.push('| kernel | kind | count | avg us | us |', '| --- | --- | --- | --- | --- |');
    for (const t of first.top) {
      lines.push(
        `| ${t.name.replace(/\|/g, '/')} | ${t.kind} | ${t.perForward} | ${t.avgUs} | ${t.usPerForward} |`,
      );
    }
  }
  return lines.join('\n');
}

function main(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { label: { type: 'string' }, top: { type: 'string', default: '12' }, json: { type: 'string' } },
  });
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    throw new Error('usage: trace-summary TRACE.json [--label L] [--top N] [--json OUT]');
  }
  const trace = JSON.parse(readFileSync(path, 'utf8')) as { traceEvents?: TraceEvent[] };
  const summaries = summarizeTrace(trace.traceEvents ?? [], Number(values.top));
  process.stdout.write(`${formatSummary(values.label ?? path, summaries)}\n`);
  if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify(summaries, null, 2)}\n`);
}

if (require.main === module) main(process.argv.slice(2));
