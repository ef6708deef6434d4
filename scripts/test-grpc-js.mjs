#!/usr/bin/env node
// Runs built tests against another @grpc/grpc-js version without touching the
// repository's node_modules: installs that version into a temporary folder,
// lays out a temporary tree (copies of the compiled code, symlinks for
// everything else, a node_modules whose @grpc/grpc-js is the other version) and runs node --test
// there. ESM ignores NODE_PATH, so a separate tree is the way to swap a peer.
//
//   node scripts/test-grpc-js.mjs <version|lowest|newest> [dist test files or folders...]
//
// `lowest` is the lowest version the peerDependencies range admits; `newest`
// the highest published one it admits (skipped when that is the version in
// node_modules, which `npm test` has just tested). Run `npm run build` first.
// The default test set is the grpc-level tests and the layers on them (about
// two minutes).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { groups, testFiles } from './test-files.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_TESTS = ['test/grpc', 'test/pool', 'test/handler', 'test/reverse', 'test/interop'];

const RANGE = JSON.parse(readFileSync(join(ROOT, 'packages', 'grpctunnel', 'package.json'), 'utf8')).peerDependencies[
  '@grpc/grpc-js'
];
const INSTALLED = JSON.parse(
  readFileSync(join(ROOT, 'node_modules', '@grpc', 'grpc-js', 'package.json'), 'utf8'),
).version;

function lowestAdmitted() {
  // The range is a single caret bound on purpose; anything else needs a human.
  const m = /^\^(\d+\.\d+\.\d+)$/.exec(RANGE.trim());
  if (!m) throw new Error(`cannot find the lowest version of peer range ${JSON.stringify(RANGE)}`);
  return m[1];
}

function newestAdmitted() {
  const r = spawnSync('npm', ['view', `@grpc/grpc-js@${RANGE}`, 'version', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm view failed: ${r.stderr}`);
  const versions = [JSON.parse(r.stdout)].flat();
  return versions[versions.length - 1];
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...options });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const [wanted = 'lowest', ...rest] = process.argv.slice(2);
const version = wanted === 'lowest' ? lowestAdmitted() : wanted === 'newest' ? newestAdmitted() : wanted;
if (wanted !== version && version === INSTALLED) {
  console.log(`# @grpc/grpc-js ${version} (${wanted} in ${RANGE}) is the one in node_modules: already tested`);
  process.exit(0);
}
const tests = testFiles(rest.length > 0 ? rest : DEFAULT_TESTS, ROOT);

const tmp = mkdtempSync(join(tmpdir(), `grpctunnel-gjs-${version}-`));
try {
  const peer = join(tmp, 'peer');
  run('npm', [
    'install',
    '--prefix',
    peer,
    '--no-save',
    '--no-package-lock',
    '--no-audit',
    '--no-fund',
    '--loglevel=error',
    `@grpc/grpc-js@${version}`,
  ]);

  const tree = join(tmp, 'tree');
  mkdirSync(tree);
  for (const entry of readdirSync(ROOT)) {
    if (entry === 'node_modules' || entry === 'dist' || entry === 'packages') continue;
    symlinkSync(join(ROOT, entry), join(tree, entry));
  }
  // Copies, not links: Node resolves packages from a module's real path, so
  // compiled code must really sit in the tree to see the other grpc-js.
  cpSync(join(ROOT, 'dist'), join(tree, 'dist'), { recursive: true });
  const workspaces = {};
  for (const pkg of readdirSync(join(ROOT, 'packages'))) {
    const from = join(ROOT, 'packages', pkg);
    const to = join(tree, 'packages', pkg);
    mkdirSync(to, { recursive: true });
    for (const entry of readdirSync(from)) {
      if (entry === 'node_modules') continue;
      if (entry === 'dist') cpSync(join(from, entry), join(to, entry), { recursive: true });
      else symlinkSync(join(from, entry), join(to, entry));
    }
    workspaces[JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')).name] = to;
  }

  const modules = realpathSync(join(ROOT, 'node_modules'));
  mkdirSync(join(tree, 'node_modules', '@grpc'), { recursive: true });
  for (const entry of readdirSync(modules)) {
    if (entry === '@grpc' || entry.startsWith('.')) continue;
    // The workspace packages are the tree's copies.
    symlinkSync(workspaces[entry] ?? join(modules, entry), join(tree, 'node_modules', entry));
  }
  for (const entry of readdirSync(join(modules, '@grpc'))) {
    const from = entry === 'grpc-js' ? join(peer, 'node_modules', '@grpc', 'grpc-js') : join(modules, '@grpc', entry);
    symlinkSync(from, join(tree, 'node_modules', '@grpc', entry));
  }

  const resolved = createRequire(join(tree, 'packages', 'grpctunnel', 'dist', 'index.js')).resolve(
    '@grpc/grpc-js/package.json',
  );
  const got = JSON.parse(readFileSync(resolved, 'utf8')).version;
  if (got !== version) throw new Error(`tree resolves @grpc/grpc-js ${got}, wanted ${version}`);
  console.log(`# testing with @grpc/grpc-js ${got}`);

  // The groups of npm test (scripts/test.mjs), one after the other: most files at once, then the rest one at a time.
  const { concurrent, serial, alone } = groups(tests);
  const common = ['--test', '--test-timeout=120000', '--test-force-exit'];
  const concurrency = Number(process.env.TEST_CONCURRENCY ?? 4);
  if (concurrent.length > 0)
    run(process.execPath, [...common, `--test-concurrency=${concurrency}`, ...concurrent], { cwd: tree });
  if (serial.length + alone.length > 0) {
    run(process.execPath, [...common, '--test-concurrency=1', ...serial, ...alone], { cwd: tree });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
