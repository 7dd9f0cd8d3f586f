import { formatSummary, kernelKind, summarizeTrace, TraceEvent } from './trace-summary';

function kernel(name: string, device: number, ts: number, dur: number): TraceEvent {
  return { name, cat: 'kernel', ph: 'X', ts, dur, args: { device } };
}

describe('trace-summary', () => {
  it('sorts kernels into kinds by name', () => {
    expect(kernelKind('void qwen3::kernels::(anonymous namespace)::PeerAllReduceKernel<bf16>')).toBe(
      'allreduce',
    );
    expect(kernelKind('ncclDevKernel_AllReduce_Sum_f32_RING_LL')).toBe('allreduce');
    expect(kernelKind('nvjet_tst_64x8_64x16_4x1_v_bz_TNT')).toBe('gemm');
    expect(kernelKind('sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n')).toBe('gemm');
    expect(kernelKind('void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>')).toBe('attention');
    expect(kernelKind('void qwen3::kernels::AddRmsNormKernel<float, bf16>')).toBe('fused');
    expect(kernelKind('Memcpy HtoD (Pageable -> Device)', 'gpu_memcpy')).toBe('copy');
    expect(kernelKind('void at::native::index_select_kernel')).toBe('other');
  });

  it('averages each GPU over the forwards and leaves kernels outside them out', () => {
    const events: TraceEvent[] = [
      { name: 'forward', cat: 'user_annotation', ts: 0, dur: 100 },
      { name: 'forward', cat: 'user_annotation', ts: 200, dur: 100 },
      kernel('gemm_a', 0, 10, 20),
      kernel('AddRmsNormKernel', 0, 40, 10),
      kernel('gemm_a', 0, 210, 30),
      kernel('PeerAllReduceKernel', 1, 20, 8),
      kernel('PeerAllReduceKernel', 1, 220, 12),
      kernel('gemm_a', 0, 150, 40), // between the forwards: warm-up or another call
      { name: 'aten::mm', cat: 'cpu_op', ts: 12, dur: 5 },
    ];
    const [gpu0, gpu1] = summarizeTrace(events);
    expect(gpu0).toMatchObject({ device: 0, forwards: 2, kernels: 1.5, busyUs: 30, spanUs: 35 });
    expect(gpu0.byKind).toMatchObject({ gemm: 25, fused: 5, allreduce: 0 });
    expect(gpu0.top[0]).toMatchObject({ name: 'gemm_a', perForward: 1, avgUs: 25 });
    expect(gpu1).toMatchObject({ device: 1, kernels: 1, busyUs: 10, spanUs: 10 });
    const text = formatSummary('tp2', [gpu0, gpu1]);
    expect(text).toContain('| 0 | 1.5 | 30 | 35 | 25 | 0 | 0 | 5 | 0 | 0 |');
    expect(text).toContain('| gemm_a | gemm | 1 | 25 | 25 |');
  });

  it('refuses a trace without the forward scope', () => {
    expect(() => summarizeTrace([kernel('k', 0, 0, 1)])).toThrow(/forward/);
  });
});
