import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/**
 * The text of the README's `## <title>` section, its heading included, up to the next `## `
 * heading; fails the test when there is no such section.
 */
export function readmeSection(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README.md has a "## ${title}" section`).toBeGreaterThan(-1);
  const rest = readme.slice(start + 1);
  const end = rest.indexOf('\n## ', 1);
  return end === -1 ? rest : rest.slice(0, end);
}
