import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Returns the path of the compiled worker entry (worker.js).
 *
 * A worker thread loads its file with Node's own loader, which runs JavaScript only. The daemon
 * runs from dist/, where worker.js sits next to this file. Under ts-jest this file is
 * src/inference/worker-script.ts and no worker.js exists beside it, so the worker is taken from
 * the build output dist/inference/ (`npm test` builds first). That build can be stale while the
 * TypeScript sources are being edited, so run `npm run build` after changing worker.ts.
 */
export function resolveWorkerScript(): string {
  if (!__filename.endsWith('.ts')) return path.join(__dirname, 'worker.js');

  const compiled = path.resolve(__dirname, '..', '..', 'dist', 'inference', 'worker.js');
  if (!existsSync(compiled)) {
    throw new Error(`compiled inference worker not found at ${compiled}; run \`npm run build\` first`);
  }
  return compiled;
}
