import { access, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_VCGENCMD_PATH, runVcgencmd } from './vcgencmd';

/** Throttling state decoded from `vcgencmd get_throttled`: "now" bits and "since boot" bits. */
export interface ThrottledFlags {
  /** The raw bit field as printed, e.g. "0x50005". */
  raw: string;
  underVoltage: boolean;
  frequencyCapped: boolean;
  throttled: boolean;
  softTemperatureLimit: boolean;
  underVoltageOccurred: boolean;
  frequencyCappedOccurred: boolean;
  throttledOccurred: boolean;
  softTemperatureLimitOccurred: boolean;
}

export interface SystemSample {
  /** Share of CPU time (all cores) that was busy since the previous sample, 0 to 1. */
  cpuLoad: number;
  /** One-minute load average divided by the number of cores. */
  loadAveragePerCore: number;
  temperatureCelsius: number | null;
  /** Null when `vcgencmd` is missing (not a Raspberry Pi) or fails. */
  throttled: ThrottledFlags | null;
  /** True when systemd-timesyncd reports a synchronized clock, null when it is not in use. */
  clockSynced: boolean | null;
  memory: { rssBytes: number; heapUsedBytes: number; systemFreeBytes: number };
}

export interface SystemSamplerOptions {
  /** Root of the sysfs tree, which tests point at a fixture folder. */
  sysfsRoot?: string;
  /** Root of the runtime state folder (`/run`). */
  runRoot?: string;
  /** Path of `vcgencmd`, or null to skip the throttling flags. */
  vcgencmdPath?: string | null;
  /** Per-core CPU times, as `os.cpus()` returns them. */
  cpuTimes?: () => os.CpuInfo[];
}

/** Bit positions of `get_throttled`, as documented for `vcgencmd` by Raspberry Pi. */
const THROTTLED_BITS = {
  underVoltage: 0,
  frequencyCapped: 1,
  throttled: 2,
  softTemperatureLimit: 3,
  underVoltageOccurred: 16,
  frequencyCappedOccurred: 17,
  throttledOccurred: 18,
  softTemperatureLimitOccurred: 19,
} as const;

/** Samples CPU load, SoC temperature, throttling, clock sync and memory. */
export class SystemSampler {
  private readonly sysfsRoot: string;
  private readonly runRoot: string;
  private readonly vcgencmdPath: string | null;
  private readonly cpuTimes: () => os.CpuInfo[];
  private previousCpu: { busy: number; total: number } | null = null;

  constructor(options: SystemSamplerOptions = {}) {
    this.sysfsRoot = options.sysfsRoot ?? '/sys';
    this.runRoot = options.runRoot ?? '/run';
    this.vcgencmdPath = options.vcgencmdPath === undefined ? DEFAULT_VCGENCMD_PATH : options.vcgencmdPath;
    this.cpuTimes = options.cpuTimes ?? (() => os.cpus());
  }

  async sample(): Promise<SystemSample> {
    const [temperatureCelsius, throttled, clockSynced] = await Promise.all([
      this.readTemperature(),
      this.readThrottled(),
      this.readClockSynced(),
    ]);
    const memory = process.memoryUsage();
    const cores = Math.max(1, this.cpuTimes().length);

    return {
      cpuLoad: this.sampleCpuLoad(),
      loadAveragePerCore: os.loadavg()[0] / cores,
      temperatureCelsius,
      throttled,
      clockSynced,
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, systemFreeBytes: os.freemem() },
    };
  }

  /** Returns the busy share of CPU time since the previous call. The first call covers the time since boot. */
  private sampleCpuLoad(): number {
    let busy = 0;
    let total = 0;
    for (const cpu of this.cpuTimes()) {
      const { user, nice, sys, idle, irq } = cpu.times;
      busy += user + nice + sys + irq;
      total += user + nice + sys + idle + irq;
    }

    const previous = this.previousCpu;
    this.previousCpu = { busy, total };
    const deltaTotal = previous === null ? total : total - previous.total;
    const deltaBusy = previous === null ? busy : busy - previous.busy;
    if (deltaTotal <= 0) return 0;
    return Math.min(1, Math.max(0, deltaBusy / deltaTotal));
  }

  /** SoC temperature from thermal zone 0, which the kernel reports in millidegrees Celsius. */
  private async readTemperature(): Promise<number | null> {
    try {
      const text = await readFile(path.join(this.sysfsRoot, 'class', 'thermal', 'thermal_zone0', 'temp'), 'utf8');
      const millidegrees = Number(text.trim());
      return Number.isFinite(millidegrees) && text.trim().length > 0 ? millidegrees / 1000 : null;
    } catch {
      return null;
    }
  }

  private async readThrottled(): Promise<ThrottledFlags | null> {
    if (this.vcgencmdPath === null) return null;
    const output = await runVcgencmd(this.vcgencmdPath, ['get_throttled']);
    return output === null ? null : parseThrottled(output);
  }

  private async readClockSynced(): Promise<boolean | null> {
    const timesync = path.join(this.runRoot, 'systemd', 'timesync');
    if (!(await exists(timesync))) return null;
    return exists(path.join(timesync, 'synchronized'));
  }
}

/** Decodes `throttled=0x50005` output. Returns null for any other text. */
export function parseThrottled(output: string): ThrottledFlags | null {
  const match = /throttled=(0x[0-9a-fA-F]+)/.exec(output);
  if (match === null) return null;
  const raw = match[1];
  const bits = Number.parseInt(raw, 16);
  const flag = (bit: number): boolean => (bits & (1 << bit)) !== 0;

  return {
    raw,
    underVoltage: flag(THROTTLED_BITS.underVoltage),
    frequencyCapped: flag(THROTTLED_BITS.frequencyCapped),
    throttled: flag(THROTTLED_BITS.throttled),
    softTemperatureLimit: flag(THROTTLED_BITS.softTemperatureLimit),
    underVoltageOccurred: flag(THROTTLED_BITS.underVoltageOccurred),
    frequencyCappedOccurred: flag(THROTTLED_BITS.frequencyCappedOccurred),
    throttledOccurred: flag(THROTTLED_BITS.throttledOccurred),
    softTemperatureLimitOccurred: flag(THROTTLED_BITS.softTemperatureLimitOccurred),
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
