import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../src/bench/daemon-throughput';

const root = path.join(__dirname, '..', '..');
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');

// The benchmark measures the daemon with DAEMON_NODE_FLAGS, so every shipped way of starting it must pass them.
describe('the daemon starts with the benchmarked Node options', () => {
  test('npm start', () => {
    const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(scripts.start).toBe(`node ${DAEMON_NODE_FLAGS.join(' ')} dist/cli/main.js run`);
  });

  test('the systemd unit', () => {
    const execStart = read('systemd/bitnet-edge.service').split('\n').find((line) => line.startsWith('ExecStart='));
    expect(execStart).toBe(`ExecStart=/usr/bin/node ${DAEMON_NODE_FLAGS.join(' ')} /opt/bitnet-edge/dist/cli/main.js run`);
  });

  test('the Docker image', () => {
    const entrypoint = read('Dockerfile.arm64').split('\n').find((line) => line.startsWith('ENTRYPOINT'));
    expect(entrypoint).toBe(`ENTRYPOINT ${JSON.stringify(['node', ...DAEMON_NODE_FLAGS, '/app/dist/cli/main.js']).replace(/","/g, '", "')}`);
  });
});
