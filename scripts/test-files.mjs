// Which built test files exist, and which of them must run alone. Shared by
// scripts/test.mjs (npm test) and scripts/test-grpc-js.mjs.
//
// A test runs only if its source does: the list comes from test/**/*.test.ts,
// mapped to dist/test/**/*.test.js, so a compiled test whose source was
// deleted or moved never runs again, even in a dist/ that was not pruned.
import { existsSync, readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Test files that must not share the machine with other test files: each
 * starts many processes, or measures time (keepalive detection, backoff
 * bounds, restarts under steady load) and would fail or flake when another
 * file takes the CPU. Everything else runs concurrently. Paths are relative
 * to test/ and name files or folders (a folder ends with '/'), so a new file
 * dropped into test/e2e/ runs alone without being listed here.
 */
export const SERIAL = [
  // Real CLI processes (gateway, agents, HAProxy, python3): several node
  // processes per file, and timing bounds around restarts.
  'e2e/',
  // Packs the tarball and installs it with npm; runs the examples as programs.
  'package.test.ts',
  'examples.test.ts',
  // Each scenario forks a child process per path.
  'grpc/call-fidelity.test.ts',
  // Timing: pings and black-holed connections must be noticed within bounds.
  'grpc/keepalive.test.ts',
  // Load: 1,000 reverse tunnels; flow control under load; RST_STREAM budget.
  'handler/scale.test.ts',
  'grpc/load.test.ts',
  'grpc/churn.test.ts',
];

/** Folders of the repository, from this script's place in scripts/. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** `test/a/b.test.ts` -> `a/b.test.ts` style paths of every test source, sorted. */
export function testSources(root = ROOT) {
  const dir = join(root, 'test');
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => f.split(sep).join('/'))
    .sort();
}

/**
 * The built test files (paths relative to `root`, `dist/test/...js`) whose
 * sources exist, limited to `wanted` (files or folders under test/ or
 * dist/test/, in either spelling) when it is not empty.
 */
export function testFiles(wanted = [], root = ROOT) {
  const prefixes = wanted.map((w) =>
    w
      .replace(/^\.\//, '')
      .replace(/^dist\//, '')
      .replace(/^test\/?/, '')
      .replace(/\.js$/, '.ts'),
  );
  const picked = testSources(root).filter(
    (f) =>
      prefixes.length === 0 || prefixes.some((p) => p === '' || f === p || f.startsWith(p.endsWith('/') ? p : `${p}/`)),
  );
  const built = picked.map((f) => `dist/test/${f.replace(/\.ts$/, '.js')}`);
  const missing = built.filter((f) => !existsSync(join(root, f)));
  if (missing.length > 0) {
    throw new Error(`not built (run npm run build): ${missing.join(', ')}`);
  }
  return built;
}

/** Whether a built test file (`dist/test/...js`) is in the serial group. */
export function isSerial(file) {
  const rel = relative('dist/test', file).split(sep).join('/').replace(/\.js$/, '.ts');
  return SERIAL.some((s) => (s.endsWith('/') ? rel.startsWith(s) : rel === s));
}
