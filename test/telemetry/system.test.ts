import type os from 'node:os';
import path from 'node:path';
import { parseThrottled, SystemSampler } from '../../src/telemetry/system';
import { FixtureFolder } from './fixtures';

/** Builds the CPU times of one core. Only the fields the sampler reads matter. */
function core(busyMs: number, idleMs: number): os.CpuInfo {
  return { model: 'test', speed: 0, times: { user: busyMs, nice: 0, sys: 0, idle: idleMs, irq: 0 } };
}

describe('SystemSampler', () => {
  let fixture: FixtureFolder;

  beforeEach(() => {
    fixture = new FixtureFolder();
  });

  afterEach(() => {
    fixture.remove();
  });

  test('reads a Raspberry Pi fixture', async () => {
    fixture.write('sys/class/thermal/thermal_zone0/temp', '48312\n');
    fixture.write('run/systemd/timesync/synchronized', '');
    const vcgencmd = fixture.writeVcgencmd({ get_throttled: 'throttled=0x50005' });

    const sampler = new SystemSampler({
      sysfsRoot: path.join(fixture.root, 'sys'),
      runRoot: path.join(fixture.root, 'run'),
      vcgencmdPath: vcgencmd,
      cpuTimes: () => [core(100, 300), core(100, 300)],
    });
    const sample = await sampler.sample();

    expect(sample.temperatureCelsius).toBeCloseTo(48.312, 9);
    expect(sample.clockSynced).toBe(true);
    expect(sample.throttled?.raw).toBe('0x50005');
    expect(sample.throttled?.underVoltage).toBe(true);
    expect(sample.throttled?.throttled).toBe(true);
    expect(sample.throttled?.frequencyCapped).toBe(false);
    expect(sample.throttled?.underVoltageOccurred).toBe(true);
    expect(sample.throttled?.throttledOccurred).toBe(true);
    expect(sample.throttled?.softTemperatureLimitOccurred).toBe(false);
    expect(sample.cpuLoad).toBeCloseTo(0.25, 9);
    expect(sample.memory.rssBytes).toBeGreaterThan(0);
    expect(sample.memory.heapUsedBytes).toBeGreaterThan(0);
  });

  test('missing sources give nulls', async () => {
    fixture.write('run/systemd/timesync/.keep', '');
    const sampler = new SystemSampler({
      sysfsRoot: path.join(fixture.root, 'sys'),
      runRoot: path.join(fixture.root, 'run'),
      vcgencmdPath: path.join(fixture.root, 'bin', 'vcgencmd'),
    });
    const sample = await sampler.sample();

    expect(sample.temperatureCelsius).toBeNull();
    expect(sample.throttled).toBeNull();
    expect(sample.clockSynced).toBe(false);
  });

  test('CPU load over the interval', async () => {
    let times = [core(100, 100)];
    const sampler = new SystemSampler({ sysfsRoot: fixture.root, runRoot: fixture.root, vcgencmdPath: null, cpuTimes: () => times });
    await sampler.sample();

    // 30 ms busy and 10 ms idle since the previous sample.
    times = [core(130, 110)];
    expect((await sampler.sample()).cpuLoad).toBeCloseTo(0.75, 9);
    expect((await sampler.sample()).cpuLoad).toBe(0);
  });
});

describe('parseThrottled', () => {
  test('zero means no flag', () => {
    const flags = parseThrottled('throttled=0x0\n');
    expect(flags).not.toBeNull();
    expect(Object.entries(flags!).filter(([key, value]) => key !== 'raw' && value === true)).toEqual([]);
  });

  test('soft temperature limit bits', () => {
    const flags = parseThrottled('throttled=0x80008');
    expect(flags?.softTemperatureLimit).toBe(true);
    expect(flags?.softTemperatureLimitOccurred).toBe(true);
    expect(flags?.underVoltage).toBe(false);
  });

  test('other text is null', () => {
    expect(parseThrottled('error=2')).toBeNull();
  });
});
