import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { envBindings } from '../../src/config/env';
import { configSchema } from '../../src/config/schema';

const EXAMPLE_FILE = path.join(__dirname, '..', '..', 'deploy', 'config.example.yaml');


function valueAt(tree: unknown, keys: string[]): unknown {
  return keys.reduce<unknown>((node, key) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined), tree);
}

describe('deploy/config.example.yaml', () => {
  const text = readFileSync(EXAMPLE_FILE, 'utf8');
  const example = YAML.parse(text) as unknown;
  const defaults = configSchema.parse({}) as unknown;
  const settings = envBindings(configSchema).map((binding) => binding.path);

  test('every setting of the schema', () => {
    const missing = settings
      .filter((keys) => {
        if (valueAt(example, keys) !== undefined) return false;
        // A setting whose default depends on the machine or that has none appears as "# key: value  # example".
        const commented = new RegExp(`^\\s*# ${keys[keys.length - 1]}: .*# example`, 'm');
        return valueAt(defaults, keys) !== undefined || !commented.test(text);
      })
      .map((keys) => keys.join('.'));
    expect(missing).toEqual([]);
  });

  test('the default of each setting', () => {
    const differing = settings
      .filter((keys) => valueAt(example, keys) !== undefined && valueAt(defaults, keys) !== undefined)
      .filter((keys) => JSON.stringify(valueAt(example, keys)) !== JSON.stringify(valueAt(defaults, keys)))
      .map((keys) => `${keys.join('.')}: ${JSON.stringify(valueAt(example, keys))} in the file, ${JSON.stringify(valueAt(defaults, keys))} by default`);
    expect(differing).toEqual([]);
  });

  test('valid configuration', () => {
    expect(configSchema.safeParse(example).success).toBe(true);
  });
});
