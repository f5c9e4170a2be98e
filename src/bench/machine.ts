import { readFileSync } from 'node:fs';
import os from 'node:os';

/** CPU flags that decide which int8 and float32 kernels onnxruntime can use. */
const KERNEL_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_int8', 'asimddp', 'i8mm'];

/** The CPU as /proc/cpuinfo describes it (the source of `lscpu`). */
export interface CpuInfo {
  modelName: string;
  cores: number;
  /** Family and model numbers on x86, e.g. 25/17 for AMD Zen 4; null elsewhere. */
  family: number | null;
  model: number | null;
  /** Current clock of the first core in MHz, or null where the kernel does not report it. */
  clockMhz: number | null;
  /** The flags of KERNEL_FLAGS that the CPU has. */
  kernelFlags: string[];
}

function field(cpuinfo: string, name: string): string | null {
  const match = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo);
  return match ? match[1].trim() : null;
}

function numberField(cpuinfo: string, name: string): number | null {
  const value = field(cpuinfo, name);
  return value === null ? null : Number(value);
}

/** Reads /proc/cpuinfo. Where it is missing (not Linux), takes the model name and core count from os.cpus(). */
export function readCpuInfo(): CpuInfo {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: os.cpus() below gives the model name and the core count.
  }
  const flags = new Set((field(cpuinfo, 'flags') ?? field(cpuinfo, 'Features') ?? '').split(/\s+/));
  return {
    modelName: field(cpuinfo, 'model name') ?? os.cpus()[0]?.model ?? 'unknown CPU',
    cores: os.cpus().length,
    family: numberField(cpuinfo, 'cpu family'),
    model: numberField(cpuinfo, 'model'),
    clockMhz: numberField(cpuinfo, 'cpu MHz'),
    kernelFlags: KERNEL_FLAGS.filter((flag) => flags.has(flag)),
  };
}

/** Returns the 1, 5 and 15 minute load averages as `uptime` prints them. */
export function loadAverage(): string {
  return os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(', ');
}

/** Peak multiply-accumulates per cycle and core of the CPU's widest vector units: an estimate. */
export interface PeakMacRate {
  int8PerCycle: number;
  float32PerCycle: number;
  /** The instructions and unit counts behind the figures. */
  basis: string;
}

/**
 * Estimates the peak MAC rate per core from the CPU flags. One AVX-512 VNNI VPDPBUSD adds 4
 * uint8 × int8 products into each of 16 int32 lanes (64 MACs), and one 512-bit FMA does 16 float32
 * MACs. AMD Zen 4 (family 25 with AVX-512) runs 512-bit instructions as two halves on its 256-bit
 * units (numberworld.org, "Zen5's AVX512 Teardown"), so it completes about one of each per cycle.
 * Intel server cores are assumed to have two 512-bit FMA units. Without VNNI, AVX2 needs two
 * multiplying instructions per 32 int8 MACs (VPMADDUBSW, then VPMADDWD to widen), and cores with two
 * 256-bit multiply units, as AMD Zen 2 and 3, run one such pair per cycle. Returns null for a CPU
 * outside this table.
 */
export function estimatePeakMacRate(cpu: CpuInfo): PeakMacRate | null {
  const has = (flag: string): boolean => cpu.kernelFlags.includes(flag);
  if (has('avx512_vnni') && cpu.family === 25) {
    return { int8PerCycle: 64, float32PerCycle: 16, basis: 'AMD Zen 4: one 512-bit VPDPBUSD (64 int8 MACs) and one 512-bit FMA (16 float32 MACs) per cycle, as two 256-bit halves' };
  }
  if (has('avx512_vnni')) {
    return { int8PerCycle: 128, float32PerCycle: 32, basis: 'two 512-bit units: 2 VPDPBUSD (2 x 64 int8 MACs) and 2 FMA (2 x 16 float32 MACs) per cycle' };
  }
  if (has('avx_vnni')) {
    return { int8PerCycle: 64, float32PerCycle: 16, basis: 'two 256-bit units: 2 VPDPBUSD (2 x 32 int8 MACs) and 2 FMA (2 x 8 float32 MACs) per cycle' };
  }
  if (has('avx2') && has('fma')) {
    return {
      int8PerCycle: 32,
      float32PerCycle: 16,
      basis:
        'AVX2 without VNNI, two 256-bit multiply units (AMD Zen 2 and 3: two FMA and two add pipes, wlog.flatlib.jp vfpbench of Zen 3): ' +
        'VPMADDUBSW (32 uint8 x int8 products) and VPMADDWD (their sums widened to int32) take one unit each, so 32 int8 MACs per cycle; 2 FMA (2 x 8 float32 MACs)',
    };
  }
  if (has('asimddp')) {
    return { int8PerCycle: 32, float32PerCycle: 8, basis: 'two 128-bit NEON units: 2 SDOT (2 x 16 int8 MACs) and 2 FMLA (2 x 4 float32 MACs) per cycle' };
  }
  return null;
}
