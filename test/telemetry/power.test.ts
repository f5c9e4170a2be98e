import path from 'node:path';
import { parsePmicOutput, PowerMeter } from '../../src/telemetry/power';
import { FixtureFolder, PMIC_OUTPUT, PMIC_WATTS } from './fixtures';

const estimate = { idleWatts: 2, maxWatts: 6 };

/** Creates a monotonic clock that advances one second (1000 ms) on every call. */
function secondTicks(): () => number {
  let nowMs = 0;
  return () => {
    nowMs += 1000;
    return nowMs;
  };
}

describe('PowerMeter', () => {
  let fixture: FixtureFolder;

  beforeEach(() => {
    fixture = new FixtureFolder();
  });

  afterEach(() => {
    fixture.remove();
  });

  function sysfs(): string {
    return path.join(fixture.root, 'sys');
  }

  test('PMIC through a stand-in vcgencmd', async () => {
    const vcgencmd = fixture.writeVcgencmd({ pmic_read_adc: PMIC_OUTPUT });
    fixture.write('sys/class/hwmon/hwmon0/name', 'ina219\n');
    fixture.write('sys/class/hwmon/hwmon0/power1_input', '5000000\n');

    const reading = await new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: vcgencmd, estimate }).read(0.5);
    expect(reading.source).toBe('pmic');
    expect(reading.estimated).toBe(false);
    expect(reading.watts).toBeCloseTo(PMIC_WATTS, 9);
  });

  test('hwmon INA sensor in microwatts', async () => {
    fixture.write('sys/class/hwmon/hwmon0/name', 'cpu_thermal\n');
    fixture.write('sys/class/hwmon/hwmon1/name', 'ina226\n');
    fixture.write('sys/class/hwmon/hwmon1/power1_input', '4250000\n');
    const missingVcgencmd = path.join(fixture.root, 'bin', 'vcgencmd');

    const reading = await new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: missingVcgencmd, estimate }).read(0.5);
    expect(reading).toEqual({ watts: 4.25, source: 'hwmon', estimated: false });
  });

  test('hwmon skips sensors without power', async () => {
    fixture.write('sys/class/hwmon/hwmon0/name', 'ina2xx\n');
    fixture.write('sys/class/hwmon/hwmon1/name', 'ina219\n');
    fixture.write('sys/class/hwmon/hwmon1/power1_input', '1500000\n');

    const reading = await new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate }).read(0.5);
    expect(reading).toEqual({ watts: 1.5, source: 'hwmon', estimated: false });
  });

  test('RAPL from the energy delta', async () => {
    fixture.write('sys/class/powercap/intel-rapl:0/energy_uj', '1000000\n');
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate, now: secondTicks(), raplFirstSampleMs: 1 });

    // The first read takes two samples. The fixture does not change between them, so 0 W.
    const first = await meter.read(0.5);
    expect(first).toEqual({ watts: 0, source: 'rapl', estimated: false });

    // 20 J more, one tick (1 s) after the previous read.
    fixture.write('sys/class/powercap/intel-rapl:0/energy_uj', '21000000\n');
    const second = await meter.read(0.5);
    expect(second.source).toBe('rapl');
    expect(second.watts).toBeCloseTo(20, 9);
  });

  test('RAPL counter wrap-around', async () => {
    fixture.write('sys/class/powercap/intel-rapl:0/energy_uj', '900\n');
    fixture.write('sys/class/powercap/intel-rapl:0/max_energy_range_uj', '1000\n');
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate, now: secondTicks(), raplFirstSampleMs: 1 });
    await meter.read(null);

    fixture.write('sys/class/powercap/intel-rapl:0/energy_uj', '100\n');
    const reading = await meter.read(null);
    expect(reading.watts).toBeCloseTo(200 / 1e6, 12);
  });

  test('estimate from CPU load', async () => {
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate });
    expect(await meter.read(0.25)).toEqual({ watts: 3, source: 'estimate', estimated: true });
    expect(await meter.read(2)).toEqual({ watts: 6, source: 'estimate', estimated: true });
  });

  test('unavailable without sensors or estimate', async () => {
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate: null });
    expect(await meter.read(0.5)).toEqual({ watts: null, source: 'unavailable', estimated: false });
  });

  test('unavailable without a CPU load', async () => {
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: null, estimate });
    expect(await meter.read(null)).toEqual({ watts: null, source: 'unavailable', estimated: false });
  });

  test('failing vcgencmd falls through', async () => {
    const vcgencmd = fixture.writeVcgencmd({});
    const meter = new PowerMeter({ sysfsRoot: sysfs(), vcgencmdPath: vcgencmd, estimate });
    expect((await meter.read(0)).source).toBe('estimate');
  });
});

describe('parsePmicOutput', () => {
  test('sums rails with current and voltage', () => {
    expect(parsePmicOutput(PMIC_OUTPUT)).toBeCloseTo(PMIC_WATTS, 9);
  });

  test('returns null for unrelated text', () => {
    expect(parsePmicOutput('error=1 error_msg="Command not registered"')).toBeNull();
  });
});
