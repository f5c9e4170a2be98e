import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, type ResolvedConfig } from '../../src/config/load';
import { Daemon, type DaemonEndpoints } from '../../src/daemon/daemon';
import { MqttProbe } from './mqtt-probe';

/** A daemon running in this process on temporary folders and an embedded broker on a free port. */
export class DaemonHarness {
  readonly dir: string;
  config!: ResolvedConfig;
  daemon!: Daemon;
  endpoints!: DaemonEndpoints;
  probe!: MqttProbe;

  constructor(
    dir?: string,
    private readonly logger: pino.Logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  ) {
    this.dir = dir ?? mkdtempSync(path.join(tmpdir(), 'bitnet-e2e-'));
  }

  async start(env: Record<string, string> = {}): Promise<this> {
    this.config = loadConfig({
      cwd: this.dir,
      env: {
        BITNET_EDGE_DEVICE_ID: 'test-device',
        BITNET_EDGE_MQTT_BROKER: 'embedded',
        BITNET_EDGE_MQTT_EMBEDDED_PORT: '0',
        BITNET_EDGE_INBOX_SETTLE_MS: '200',
        BITNET_EDGE_INBOX_RESCAN_MS: '500',
        BITNET_EDGE_TELEMETRY_INTERVAL_MS: '1000',
        BITNET_EDGE_MODEL_INTRA_OP_THREADS: '1',
        ...env,
      },
    });
    this.daemon = new Daemon(this.config, this.logger);
    this.endpoints = await this.daemon.start();

    this.probe = new MqttProbe(this.endpoints.brokerUrl);
    const { topics } = this.endpoints;
    await this.probe.connect([topics.predictions, topics.response, topics.errors, topics.telemetry, topics.status]);
    return this;
  }

  /** Stops the daemon and the probe; the folders stay for a restart. */
  async stop(): Promise<void> {
    await this.probe?.close();
    await this.daemon?.stop();
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
