// A fresh clone must be able to run `npm test` on its own: no test, helper,
// example or benchmark may read a file outside the repository (an earlier
// transcript helper read ../shared/, which only existed on the CI machine).
// Tests run from dist/, so every relative path literal is resolved from the
// compiled file's folder, which is where `new URL(rel, import.meta.url)` and
// relative imports resolve at run time.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Each source folder and where its compiled files run (scripts run where they are). */
const FOLDERS: [source: string, runsFrom: string][] = [
  ...['test', 'bench', 'examples', 'interop'].map((f): [string, string] => [f, `dist/${f}`]),
  ['packages/grpctunnel/src', 'packages/grpctunnel/dist'],
  ['packages/gateway/src', 'packages/gateway/dist'],
  ['scripts', 'scripts'],
];

function sources(dir: string): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sources(path);
    return /\.(ts|mjs|js)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** String literals that are relative paths ('./x', '../x'), without template holes. */
function relativeLiterals(text: string): string[] {
  return [...text.matchAll(/(['"`])(\.\.?\/[^'"`$\n]*)\1/g)].map((m) => m[2]!);
}

const inside = (path: string) => path === ROOT.replace(/\/$/, '') || path.startsWith(ROOT);

it('no source reads a relative path that leaves the repository', () => {
  const escapes: string[] = [];
  for (const [folder, runsFrom] of FOLDERS) {
    for (const file of sources(join(ROOT, folder))) {
      const rel = relative(ROOT, file);
      const runDir = dirname(join(ROOT, runsFrom, relative(join(ROOT, folder), file)));
      for (const literal of relativeLiterals(readFileSync(file, 'utf8'))) {
        if (!inside(resolve(runDir, literal))) escapes.push(`${rel}: '${literal}'`);
      }
    }
  }
  assert.deepEqual(escapes, [], 'these paths point outside the repository');
});

it('no test names an absolute path of this machine', () => {
  const found: string[] = [];
  for (const file of sources(join(ROOT, 'test'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(['"`])(\/(?:work|home|root|Users)\/[^'"`\n]*)\1/g)) {
      found.push(`${relative(ROOT, file)}: '${m[2]}'`);
    }
  }
  assert.deepEqual(found, [], `absolute paths (the repository is at ${ROOT.split(sep).join('/')})`);
});
