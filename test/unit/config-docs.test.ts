import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config.js';
import { readmeSection } from '../helpers/readme-section.js';

// Operators read the README's table and copy .env.example: a variable missing from either is a
// setting nobody knows of, and one named there that the code does not read is a setting that
// does nothing.
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

/** The variable names in the first column of the table under `## Configuration`. */
function documentedVariables(): Set<string> {
  const names = readmeSection('Configuration')
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!));
  return new Set(names);
}

/** Names set or shown commented out (`# NAME=`) in .env.example. */
function exampleVariables(): Set<string> {
  return new Set([...read('.env.example').matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
}

describe('configuration docs', () => {
  it('the README table names every variable, and only those', () => {
    const documented = documentedVariables();
    expect([...CONFIG_VARIABLES].filter((name) => !documented.has(name)), 'missing from README.md').toEqual([]);
    expect([...documented].filter((name) => !CONFIG_VARIABLES.includes(name as never)), 'not read by src/config.ts').toEqual([]);
  });

  it('.env.example shows every variable, and only those', () => {
    const shown = exampleVariables();
    expect([...CONFIG_VARIABLES].filter((name) => !shown.has(name)), 'missing from .env.example').toEqual([]);
    expect([...shown].filter((name) => !CONFIG_VARIABLES.includes(name as never)), 'not read by src/config.ts').toEqual([]);
  });
});
