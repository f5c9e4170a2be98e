import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Made-up output in the format of `vcgencmd pmic_read_adc` on a Raspberry Pi 5. The rails sum to 3.62 W. */
export const PMIC_OUTPUT = [
  '     3V7_WL_SW_A current(0)=0.10000000A',
  '       3V3_SYS_A current(1)=0.50000000A',
  '      VDD_CORE_A current(7)=2.00000000A',
  '     3V7_WL_SW_V volt(8)=3.70000000V',
  '       3V3_SYS_V volt(9)=3.30000000V',
  '      VDD_CORE_V volt(15)=0.80000000V',
  '         EXT5V_V volt(24)=5.10000000V',
  '',
].join('\n');

export const PMIC_WATTS = 0.1 * 3.7 + 0.5 * 3.3 + 2.0 * 0.8;

/** Temporary folder for fixture trees, deleted by `remove()`. */
export class FixtureFolder {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-telemetry-'));

  write(relativePath: string, content: string): string {
    const file = path.join(this.root, relativePath);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    return file;
  }

  /** Writes a stand-in `vcgencmd` shell script that prints fixed output for each command. */
  writeVcgencmd(outputs: { pmic_read_adc?: string; get_throttled?: string }): string {
    const cases = Object.entries(outputs)
      .map(([command, output]) => `  ${command}) cat <<'OUTPUT'\n${output}\nOUTPUT\n  ;;`)
      .join('\n');
    const file = this.write('bin/vcgencmd', `#!/bin/sh\ncase "$1" in\n${cases}\n  *) echo "unknown command" >&2; exit 1 ;;\nesac\n`);
    fs.chmodSync(file, 0o755);
    return file;
  }

  remove(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
