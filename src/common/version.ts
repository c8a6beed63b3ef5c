import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The package version (read once from package.json, from src/ or dist/). */
export const VERSION: string = (() => {
  for (const p of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(path.join(__dirname, p), 'utf8')) as { version: string }).version;
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
})();
