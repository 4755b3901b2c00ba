import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

type ClientModule = typeof import('../../src/client/postbox.js');

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = `${root}dist/client/postbox.js`;

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Builds `dist/client` as `npm test`'s pretest script does, when it is missing
 * or older than its source, so a single test file can run on its own.
 */
export function ensureClientBuilt(): void {
  if (mtime(built) >= mtime(`${root}src/client/postbox.ts`)) return;
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.client.json`], {
    stdio: 'pipe',
  });
}

/** The client as browsers get it from `GET /client/postbox.js`: the compiled module, not the TypeScript source. */
export async function importBuiltClient(): Promise<ClientModule> {
  ensureClientBuilt();
  return (await import(pathToFileURL(built).href)) as ClientModule;
}
