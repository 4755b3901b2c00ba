import { describe, expect, it } from 'vitest';
import { errorCatalogue } from '../../src/errors.js';
import { readmeSection } from '../helpers/readme-section.js';

// The README's table of error codes is the reference clients read; it must say what the code does.

/** The rows of the table under `## Error codes`: code, status, meaning. */
function documentedCodes(): Array<{ code: string; status: number; meaning: string }> {
  const section = readmeSection('Error codes');
  expect(section).toMatch(/^\| code \| status \| meaning \|$/m);
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => {
      const cells = line.split('|').slice(1, -1).map((cell) => cell.trim());
      expect(cells, line).toHaveLength(3);
      const [code, status, meaning] = cells as [string, string, string];
      return { code: code.replace(/^`|`$/g, ''), status: Number(status), meaning };
    });
}

describe('README error codes', () => {
  const rows = documentedCodes();

  it('documents every code of the catalogue with its status', () => {
    const documented = new Map(rows.map((row) => [row.code, row.status]));
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      expect(documented.has(code), `${code} is in README.md`).toBe(true);
      expect(documented.get(code), `status of ${code}`).toBe(entry.status);
    }
  });

  it('documents nothing that does not exist, each code once, each with a meaning', () => {
    const known = new Set(Object.keys(errorCatalogue));
    expect(rows.map((row) => row.code).filter((code) => !known.has(code))).toEqual([]);
    expect(new Set(rows.map((row) => row.code)).size).toBe(rows.length);
    for (const row of rows) expect(row.meaning.length, `meaning of ${row.code}`).toBeGreaterThan(10);
  });
});
