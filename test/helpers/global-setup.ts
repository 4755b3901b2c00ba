import { execFileSync } from 'node:child_process';

/** Fails fast with a clear message when redis-server is missing, instead of every file timing out. */
export default function setup(): void {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'pipe' });
  } catch {
    throw new Error('redis-server is not on PATH: install it (apt-get install -y redis-server) to run the tests');
  }
}
