import { z } from 'zod';

/** Prefix of every environment variable that overrides a configuration value. */
export const ENV_PREFIX = 'BITNET_EDGE_';

/** One configuration leaf that an environment variable can set. */
export interface EnvBinding {
  path: string[];
  variable: string;
  kind: 'string' | 'number' | 'boolean' | 'enum';
  description: string;
}

function toSnakeUpper(segment: string): string {
  return segment.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Strips the wrappers that do not change a leaf's type. */
function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  let current = schema;
  for (;;) {
    if (current instanceof z.ZodDefault) current = current._def.innerType as z.ZodTypeAny;
    else if (current instanceof z.ZodOptional) current = current._def.innerType as z.ZodTypeAny;
    else if (current instanceof z.ZodEffects) current = current._def.schema as z.ZodTypeAny;
    else return current;
  }
}

/** Lists every leaf of the schema with the environment variable derived from its path. */
export function envBindings(schema: z.ZodTypeAny, path: string[] = []): EnvBinding[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject) {
    const shape = inner.shape as Record<string, z.ZodTypeAny>;
    return Object.entries(shape).flatMap(([key, child]) => envBindings(child, [...path, key]));
  }

  const variable = ENV_PREFIX + path.map(toSnakeUpper).join('_');
  const description = schema.description ?? inner.description ?? '';
  if (inner instanceof z.ZodNumber) return [{ path, variable, kind: 'number', description }];
  if (inner instanceof z.ZodBoolean) return [{ path, variable, kind: 'boolean', description }];
  if (inner instanceof z.ZodEnum) return [{ path, variable, kind: 'enum', description }];
  return [{ path, variable, kind: 'string', description }];
}

/** Converts an environment string to the leaf's type; invalid text is left for the schema to report. */
function parseEnvValue(binding: EnvBinding, text: string): unknown {
  if (binding.kind === 'number') {
    const value = Number(text);
    return text.trim() !== '' && Number.isFinite(value) ? value : text;
  }
  if (binding.kind === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(text)) return true;
    if (/^(false|0|no|off)$/i.test(text)) return false;
    return text;
  }
  return text;
}

/**
 * Returns a copy of `raw` with every environment override applied, and the variables used.
 * The caller's object is not modified.
 */
export function applyEnvOverrides(
  schema: z.ZodTypeAny,
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): { merged: Record<string, unknown>; applied: string[] } {
  const merged = structuredClone(raw);
  const applied: string[] = [];

  for (const binding of envBindings(schema)) {
    const text = env[binding.variable];
    if (text === undefined) continue;

    let node: Record<string, unknown> = merged;
    for (const key of binding.path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[binding.path[binding.path.length - 1]] = parseEnvValue(binding, text);
    applied.push(binding.variable);
  }
  return { merged, applied };
}
