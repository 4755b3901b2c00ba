import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CLIENT_FILES, clientBuildStale } from '../../src/http/client-build.js';

type ClientModule = typeof import('../../src/client/postbox.js');

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = `${root}dist/client/postbox.js`;

/**
 * Builds `dist/client` as `npm test`'s pretest script does, when it is missing
 * or older than its source, so a single test file can run on its own. Written
 * to a temporary directory and renamed into place, so a node serving the client
 * meanwhile (or another test file building it) never reads half a file.
 */
export function ensureClientBuilt(): void {
  if (!clientBuildStale(root)) return;
  mkdirSync(`${root}dist`, { recursive: true });
  const out = mkdtempSync(`${root}dist/.client-test-`);
  try {
    execFileSync(
      process.execPath,
      [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.client.json`, '--outDir', out],
      { stdio: 'pipe' },
    );
    mkdirSync(`${root}dist/client`, { recursive: true });
    for (const name of CLIENT_FILES) renameSync(`${out}/${name}`, `${root}dist/client/${name}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** The client as browsers get it from `GET /client/postbox.js`: the compiled module, not the TypeScript source. */
export async function importBuiltClient(): Promise<ClientModule> {
  ensureClientBuilt();
  return (await import(pathToFileURL(built).href)) as ClientModule;
}
