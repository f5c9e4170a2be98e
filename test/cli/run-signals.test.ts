import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../support/ports';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'cli', 'main.js');

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  messages: string[];
}

/**
 * Starts `bitnet-edge run` and sends `signal` as soon as the first log line appears. The command
 * writes that line before the daemon starts, so the signal arrives while the start is under way.
 */
function signalDuringStart(cwd: string, port: number, signal: NodeJS.Signals): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'run'], {
      cwd,
      env: {
        ...process.env,
        BITNET_EDGE_DEVICE_ID: 'signal-test',
        BITNET_EDGE_MQTT_BROKER: 'embedded',
        BITNET_EDGE_MQTT_EMBEDDED_PORT: String(port),
        BITNET_EDGE_MODEL_INTRA_OP_THREADS: '1',
        BITNET_EDGE_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr.resume();
    const messages: string[] = [];
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        messages.push((JSON.parse(line) as { msg: string }).msg);
        if (messages.length === 1) child.kill(signal);
      }
    });
    child.once('error', reject);
    child.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal, messages }));
  });
}

describe('bitnet-edge run and stop signals', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bitnet-signals-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('%s during start exits cleanly', async (signal) => {
    const outcome = await signalDuringStart(dir, await freePort(), signal);

    expect(outcome.messages[0]).toBe('configuration overridden by environment');
    expect(outcome).toMatchObject({ code: 0, signal: null });
    const started = outcome.messages.indexOf('daemon started');
    expect(started).toBeGreaterThan(0);
    expect(outcome.messages.indexOf('stopping')).toBeGreaterThan(started);
    expect(outcome.messages.at(-1)).toBe('stopped');
  }, 60_000);
});
