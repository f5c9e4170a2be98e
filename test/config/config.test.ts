import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, bundledModelDir, loadConfig } from '../../src/config/load';
import { envBindings } from '../../src/config/env';
import { configSchema } from '../../src/config/schema';

describe('loadConfig', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bitnet-config-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function writeYaml(text: string): string {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, text);
    return file;
  }

  test('defaults need no file', () => {
    const config = loadConfig({ env: {}, cwd: dir });

    expect(config.configFile).toBeNull();
    expect(config.folders.inbox).toBe(path.join(dir, 'inbox'));
    expect(config.folders.data).toBe(path.join(dir, 'data'));
    expect(config.mqtt.broker).toBe('auto');
    expect(config.mqtt.embeddedHost).toBe('127.0.0.1');
    expect(config.telemetry.intervalMs).toBe(10_000);
    expect(config.model.dir).toBe(bundledModelDir());
    expect(config.mqtt.clientId).toBe(`bitnet-edge-${config.deviceId}`);
  });

  test('YAML values override defaults', () => {
    const file = writeYaml('deviceId: pi-lab-3\nmqtt:\n  baseTopic: lab\n  keepaliveSeconds: 15\nfolders:\n  inbox: /srv/incoming\n');
    const config = loadConfig({ file, env: {}, cwd: dir });

    expect(config.deviceId).toBe('pi-lab-3');
    expect(config.mqtt.baseTopic).toBe('lab');
    expect(config.mqtt.keepaliveSeconds).toBe(15);
    expect(config.folders.inbox).toBe('/srv/incoming');
    expect(config.folders.outbox).toBe(path.join(dir, 'outbox'));
  });

  test('environment overrides the file', () => {
    const file = writeYaml('mqtt:\n  url: mqtt://127.0.0.1:1883\n');
    const env = {
      BITNET_EDGE_MQTT_URL: 'mqtts://127.0.0.1:8883',
      BITNET_EDGE_TELEMETRY_INTERVAL_MS: '5000',
      BITNET_EDGE_INBOX_ENABLED: 'false',
      BITNET_EDGE_MQTT_TLS_REJECT_UNAUTHORIZED: 'no',
    };
    const config = loadConfig({ file, env, cwd: dir });

    expect(config.mqtt.url).toBe('mqtts://127.0.0.1:8883');
    expect(config.telemetry.intervalMs).toBe(5000);
    expect(config.inbox.enabled).toBe(false);
    expect(config.mqtt.tls.rejectUnauthorized).toBe(false);
    expect(config.envOverrides).toEqual(expect.arrayContaining(['BITNET_EDGE_MQTT_URL', 'BITNET_EDGE_TELEMETRY_INTERVAL_MS']));
  });

  test('every error is reported with its path', () => {
    const file = writeYaml('mqtt:\n  keepaliveSeconds: -1\n  broker: sometimes\ntelemetry:\n  intervalMs: fast\nunknownKey: 1\n');
    let error: unknown;
    try {
      loadConfig({ file, env: { BITNET_EDGE_INBOX_SETTLE_MS: 'soon' }, cwd: dir });
    } catch (err) {
      error = err;
    }

    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^mqtt\.keepaliveSeconds: /m);
    expect(problems).toMatch(/^mqtt\.broker: /m);
    expect(problems).toMatch(/^telemetry\.intervalMs: /m);
    expect(problems).toMatch(/^inbox\.settleMs: /m);
    expect(problems).toMatch(/unknownKey/);
  });

  test('invalid YAML names the file', () => {
    const file = writeYaml('mqtt: [unclosed\n');

    expect(() => loadConfig({ file, env: {}, cwd: dir })).toThrow(/config\.yaml/);
  });

  test('missing file is a config error', () => {
    expect(() => loadConfig({ file: path.join(dir, 'absent.yaml'), env: {}, cwd: dir })).toThrow(ConfigError);
  });

  test('result is frozen', () => {
    const config = loadConfig({ env: {}, cwd: dir });

    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.mqtt)).toBe(true);
  });
});

describe('envBindings', () => {
  test('every variable name is unique', () => {
    const names = envBindings(configSchema).map((binding) => binding.variable);

    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('BITNET_EDGE_MQTT_MAX_PAYLOAD_BYTES');
    expect(names).toContain('BITNET_EDGE_FOLDERS_INBOX');
  });
});
