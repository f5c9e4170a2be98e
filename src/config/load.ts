import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { applyEnvOverrides } from './env';
import { configSchema, type Config } from './schema';

/** Configuration after validation, with absolute folders and the derived values filled in. */
export type ResolvedConfig = Config & {
  deviceId: string;
  mqtt: Config['mqtt'] & { clientId: string };
  model: Config['model'] & { dir: string };
  /** The configuration file read, or null when only defaults and the environment were used. */
  configFile: string | null;
  /** Environment variables that overrode a value. */
  envOverrides: string[];
};

/** Raised when the configuration is invalid; `problems` lists every error with its path. */
export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`invalid configuration (${source}):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Folder of the model shipped in the package. */
export function bundledModelDir(): string {
  return path.resolve(__dirname, '..', '..', 'models', 'bitnet-protein-tiny');
}

function formatIssue(issue: z.ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(root)';
  return `${where}: ${issue.message}`;
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read the file: ${(err as Error).message}`], file);
  }

  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (err) {
    throw new ConfigError([`invalid YAML: ${(err as Error).message}`], file);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(['(root): expected a mapping of settings'], file);
  }
  return parsed as Record<string, unknown>;
}

/**
 * Loads the configuration: the YAML file when given, then `BITNET_EDGE_*` environment
 * overrides, validated against the schema. Relative folders resolve against `cwd`.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): ResolvedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = options.file ?? env.BITNET_EDGE_CONFIG;
  const filePath = file ? path.resolve(cwd, file) : null;

  const raw = filePath ? readYaml(filePath) : {};
  const { merged, applied } = applyEnvOverrides(configSchema, raw, env);
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map(formatIssue), filePath ?? 'defaults and environment');
  }

  const config = result.data;
  const deviceId = config.deviceId ?? sanitizeDeviceId(hostname());
  const resolveFolder = (folder: string): string => path.resolve(cwd, folder);
  const resolved: ResolvedConfig = {
    ...config,
    deviceId,
    folders: {
      inbox: resolveFolder(config.folders.inbox),
      outbox: resolveFolder(config.folders.outbox),
      done: resolveFolder(config.folders.done),
      failed: resolveFolder(config.folders.failed),
      data: resolveFolder(config.folders.data),
    },
    mqtt: {
      ...config.mqtt,
      clientId: config.mqtt.clientId ?? `bitnet-edge-${deviceId}`,
      tls: { ...config.mqtt.tls },
    },
    model: {
      ...config.model,
      dir: config.model.dir ? path.resolve(cwd, config.model.dir) : bundledModelDir(),
    },
    configFile: filePath,
    envOverrides: applied,
  };
  return deepFreeze(resolved);
}

/** Host names may contain characters that are not allowed in a topic level. */
function sanitizeDeviceId(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '-');
  return cleaned.length > 0 ? cleaned : 'device';
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
