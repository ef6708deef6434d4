#!/usr/bin/env node
// Part of `npm run build`: removes compiled files whose TypeScript source is
// gone. tsc never deletes what it emitted earlier, so without this a deleted
// or moved test kept running from dist/, and a deleted module stayed
// importable there. tsc emits nothing but these four kinds from .ts sources
// (no allowJs), so anything else under these folders is left alone.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './test-files.mjs';

/** Each compiled folder and the source folder it comes from (the tsconfig.json files' rootDir/outDir). */
const FOLDERS = [
  ['packages/grpctunnel/dist', 'packages/grpctunnel/src'],
  ['packages/gateway/dist', 'packages/gateway/src'],
  ...['test', 'bench', 'examples', 'interop'].map((folder) => [`dist/${folder}`, folder]),
];
const EMITTED = /(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/;

let removed = 0;
for (const [built, from] of FOLDERS) {
  const out = join(ROOT, built);
  if (!existsSync(out)) continue;
  for (const entry of readdirSync(out, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !EMITTED.test(entry.name)) continue;
    const file = join(entry.parentPath, entry.name);
    const source = join(ROOT, from, file.slice(out.length).replace(EMITTED, '.ts'));
    if (existsSync(source)) continue;
    rmSync(file);
    removed++;
  }
}
if (removed > 0) console.error(`prune-dist: removed ${removed} compiled files whose sources are gone`);
