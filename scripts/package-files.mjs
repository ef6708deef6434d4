#!/usr/bin/env node
// Part of `npm run build`: puts the repository's license and changelog into
// both packages, and its README into the library's, since npm packs only
// files inside a package's folder. The copies are not checked in
// (.gitignore); the gateway's README is its own, and checked in.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './test-files.mjs';

const copies = {
  'packages/grpctunnel': ['LICENSE', 'CHANGELOG.md', 'README.md'],
  'packages/gateway': ['LICENSE', 'CHANGELOG.md'],
};
for (const [pkg, names] of Object.entries(copies)) {
  for (const name of names) copyFileSync(join(ROOT, name), join(ROOT, pkg, name));
}
