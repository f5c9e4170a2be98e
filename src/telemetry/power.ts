import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_VCGENCMD_PATH, runVcgencmd } from './vcgencmd';

/** Source of a power reading. */
export type PowerSource = 'pmic' | 'hwmon' | 'rapl' | 'estimate' | 'unavailable';

export interface PowerReading {
  /** Power in watts, or null when no source is available. */
  watts: number | null;
  source: PowerSource;
  /** True when the value comes from the load model, not from a sensor. */
  estimated: boolean;
}

/** Parameters of the load-based estimate: idleWatts + load × (maxWatts − idleWatts). */
export interface PowerEstimate {
  idleWatts: number;
  maxWatts: number;
}

export interface PowerMeterOptions {
  /** Root of the sysfs tree, which tests point at a fixture folder. */
  sysfsRoot?: string;
  /** Path of `vcgencmd`, or null to skip the PMIC reader. */
  vcgencmdPath?: string | null;
  /** Load model used when no sensor is found, or null to disable the estimate. */
  estimate: PowerEstimate | null;
  /** Monotonic time in ms, for the RAPL energy delta. */
  now?: () => number;
  /** Wait between the two RAPL reads of the first sample, in ms. */
  raplFirstSampleMs?: number;
}

const HWMON_POWER_SENSORS = /^ina2(xx|\d\d)$/;
const RAPL_ZONE = path.join('class', 'powercap', 'intel-rapl:0');

/**
 * Reads the device power from the first source that works, in this order: the Raspberry Pi 5
 * PMIC (`vcgencmd pmic_read_adc`), an INA2xx sensor under hwmon, Intel RAPL, the load-based
 * estimate, else `unavailable`.
 */
export class PowerMeter {
  private readonly sysfsRoot: string;
  private readonly vcgencmdPath: string | null;
  private readonly now: () => number;
  private lastRapl: { energyMicrojoules: number; timeMs: number } | null = null;

  constructor(private readonly options: PowerMeterOptions) {
    this.sysfsRoot = options.sysfsRoot ?? '/sys';
    this.vcgencmdPath = options.vcgencmdPath === undefined ? DEFAULT_VCGENCMD_PATH : options.vcgencmdPath;
    this.now = options.now ?? (() => performance.now());
  }

  /** Reads the power. `cpuLoad` (0 to 1) feeds the estimate and may be null when unknown. */
  async read(cpuLoad: number | null): Promise<PowerReading> {
    const pmic = await this.readPmic();
    if (pmic !== null) return { watts: pmic, source: 'pmic', estimated: false };

    const hwmon = await this.readHwmon();
    if (hwmon !== null) return { watts: hwmon, source: 'hwmon', estimated: false };

    const rapl = await this.readRapl();
    if (rapl !== null) return { watts: rapl, source: 'rapl', estimated: false };

    const estimate = this.options.estimate;
    if (estimate !== null && cpuLoad !== null) {
      const load = Math.min(1, Math.max(0, cpuLoad));
      return { watts: estimate.idleWatts + load * (estimate.maxWatts - estimate.idleWatts), source: 'estimate', estimated: true };
    }
    return { watts: null, source: 'unavailable', estimated: false };
  }

  /**
   * Sums current × voltage over the PMIC rails. NOTE: the rails are the PMIC outputs, so
   * conversion losses and power drawn by USB devices straight from the 5 V input are missing.
   */
  private async readPmic(): Promise<number | null> {
    if (this.vcgencmdPath === null) return null;
    const output = await runVcgencmd(this.vcgencmdPath, ['pmic_read_adc']);
    return output === null ? null : parsePmicOutput(output);
  }

  /** Reads `power1_input` (µW) of the first INA2xx sensor in name order. */
  private async readHwmon(): Promise<number | null> {
    const hwmonDir = path.join(this.sysfsRoot, 'class', 'hwmon');
    let entries: string[];
    try {
      entries = (await readdir(hwmonDir)).sort();
    } catch {
      return null;
    }

    for (const entry of entries) {
      const name = await readTrimmed(path.join(hwmonDir, entry, 'name'));
      if (name === null || !HWMON_POWER_SENSORS.test(name)) continue;
      const microwatts = parseNumber(await readTrimmed(path.join(hwmonDir, entry, 'power1_input')));
      if (microwatts !== null) return microwatts / 1e6;
    }
    return null;
  }

  /** Watts from the change of the package energy counter since the previous read. */
  private async readRapl(): Promise<number | null> {
    const zone = path.join(this.sysfsRoot, RAPL_ZONE);
    const first = await this.readRaplEnergy(zone);
    if (first === null) return null;

    let previous = this.lastRapl;
    let current = first;
    if (previous === null) {
      // The first sample has no earlier read, so it takes a second one a moment later.
      previous = first;
      await new Promise((resolve) => setTimeout(resolve, this.options.raplFirstSampleMs ?? 200));
      const second = await this.readRaplEnergy(zone);
      if (second === null) return null;
      current = second;
    }
    this.lastRapl = current;

    const elapsedSeconds = (current.timeMs - previous.timeMs) / 1000;
    if (elapsedSeconds <= 0) return null;
    let deltaMicrojoules = current.energyMicrojoules - previous.energyMicrojoules;
    if (deltaMicrojoules < 0) {
      // The counter wrapped around at max_energy_range_uj.
      const range = parseNumber(await readTrimmed(path.join(zone, 'max_energy_range_uj')));
      if (range === null) return null;
      deltaMicrojoules += range;
    }
    return deltaMicrojoules / 1e6 / elapsedSeconds;
  }

  private async readRaplEnergy(zone: string): Promise<{ energyMicrojoules: number; timeMs: number } | null> {
    // Recent kernels let only root read energy_uj, so a read error means RAPL is unavailable.
    const energy = parseNumber(await readTrimmed(path.join(zone, 'energy_uj')));
    return energy === null ? null : { energyMicrojoules: energy, timeMs: this.now() };
  }
}

/**
 * Parses `vcgencmd pmic_read_adc` output, lines such as `VDD_CORE_A current(7)=2.1A` and
 * `VDD_CORE_V volt(15)=0.8V`, into the sum of current × voltage over the rails that have
 * both. Returns null when no rail has both.
 */
export function parsePmicOutput(output: string): number | null {
  const currents = new Map<string, number>();
  const volts = new Map<string, number>();
  const line = /^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([0-9.eE+-]+)[AV]\s*$/;

  for (const text of output.split('\n')) {
    const match = line.exec(text);
    if (match === null) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    (match[2] === 'A' ? currents : volts).set(match[1], value);
  }

  let watts = 0;
  let rails = 0;
  for (const [rail, amperes] of currents) {
    const voltage = volts.get(rail);
    if (voltage === undefined) continue;
    watts += amperes * voltage;
    rails += 1;
  }
  return rails > 0 ? watts : null;
}

async function readTrimmed(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return null;
  }
}

function parseNumber(text: string | null): number | null {
  if (text === null || text.length === 0) return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}
