import { estimatePeakMacRate, type CpuInfo } from '../../src/bench/machine';

function cpu(family: number | null, kernelFlags: string[]): CpuInfo {
  return { modelName: 'test CPU', cores: 2, family, model: 1, clockMhz: 2500, kernelFlags };
}

describe('estimatePeakMacRate', () => {
  test('Zen 4 with AVX-512 VNNI', () => {
    const rate = estimatePeakMacRate(cpu(25, ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni']));
    expect(rate).toMatchObject({ int8PerCycle: 64, float32PerCycle: 16 });
  });

  test('AVX2 without VNNI', () => {
    const rate = estimatePeakMacRate(cpu(25, ['avx2', 'fma']));
    expect(rate).toMatchObject({ int8PerCycle: 32, float32PerCycle: 16 });
    expect(rate?.basis).toContain('VPMADDUBSW');
  });

  test('AVX-VNNI before plain AVX2', () => {
    expect(estimatePeakMacRate(cpu(6, ['avx2', 'fma', 'avx_vnni']))).toMatchObject({ int8PerCycle: 64 });
  });

  test('arm64 with dot product', () => {
    expect(estimatePeakMacRate(cpu(null, ['asimddp']))).toMatchObject({ int8PerCycle: 32, float32PerCycle: 8 });
  });

  test('unknown CPU has no estimate', () => {
    expect(estimatePeakMacRate(cpu(null, []))).toBeNull();
  });
});
