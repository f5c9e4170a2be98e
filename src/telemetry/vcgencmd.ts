import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';

/** Install path of `vcgencmd` on Raspberry Pi OS. */
export const DEFAULT_VCGENCMD_PATH = '/usr/bin/vcgencmd';

const TIMEOUT_MS = 2000;

/**
 * Runs `vcgencmd` with `args` and returns its stdout, or null when the binary is missing, not
 * executable, fails or times out (a machine that is not a Raspberry Pi has none).
 */
export async function runVcgencmd(binaryPath: string, args: string[]): Promise<string | null> {
  try {
    await access(binaryPath, constants.X_OK);
  } catch {
    return null;
  }

  return new Promise((resolve) => {
    execFile(binaryPath, args, { timeout: TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      resolve(err ? null : stdout);
    });
  });
}
