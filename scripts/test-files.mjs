// Which built test files exist, which run one at a time, and which start
// first. Shared by scripts/test.mjs (npm test) and scripts/test-grpc-js.mjs.
//
// A test runs only if its source does: the list comes from test/**/*.test.ts,
// mapped to dist/test/**/*.test.js, so a compiled test whose source was
// deleted or moved never runs again, even in a dist/ that was not pruned.
// New test files are picked up by that listing and run concurrently unless
// named in SERIAL.
import { existsSync, readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Test files that run one at a time, in this order (beside the concurrent
 * ones, never beside each other): each starts many processes, holds a load,
 * or measures time (keepalive detection, backoff bounds, restarts under
 * steady calls), and two of them together would fail or flake. Paths are
 * relative to test/; one ending in '/' names a folder.
 */
export const SERIAL = [
  // 5 agents with 100 tunnels through a gateway restart; agents restarted
  // under steady calls.
  'e2e/reconnect-storm.test.ts',
  'e2e/rolling-restart.test.ts',
  // Timing: pings and black-holed connections must be noticed within bounds.
  'e2e/keepalive.test.ts',
  'grpc/keepalive.test.ts',
  // Load and scale: flow control under load, 1,000 reverse tunnels.
  'grpc/load.test.ts',
  'handler/scale.test.ts',
];

/**
 * Test files that run after both lanes, one at a time, with nothing else:
 * - HAProxy in front of three gateway replicas and 10 agent processes,
 *   restarted one by one under steady calls: the heaviest file (13 s of CPU),
 *   and it measures timings (stop, ready, agents back) that a busy machine
 *   would stretch.
 * - the churn test opens and closes 300 tunnels a second for 20-60 s and
 *   needs the whole machine to keep that rate: beside other test files its
 *   tunnel server fell more than the 5 s end-of-RPC grace behind (the client
 *   then resets the RPCs) and its long-lived calls starved.
 */
export const ALONE = ['e2e/replicas.test.ts', 'grpc/churn.test.ts'];

/**
 * Concurrent files known to take longest, started first so that they overlap
 * the rest instead of starting last: npm pack and install into an empty
 * project, the interop matrix's fixed-time load runs, the CLI end-to-end
 * files, the tunnel-end cases that wait out timers.
 */
export const LONG = [
  'package.test.ts',
  'interop/matrix.test.ts',
  'e2e/gateway-cli.test.ts',
  'e2e/gateway.test.ts',
  'grpc/tunnel-end.test.ts',
];

/** The repository, from this script's place in scripts/. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** `a/b.test.ts` style paths (relative to test/) of every test source, sorted. */
export function testSources(root = ROOT) {
  return readdirSync(join(root, 'test'), { recursive: true })
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

/** `dist/test/a/b.test.js` -> `a/b.test.ts`, as SERIAL and LONG name files. */
function sourceOf(file) {
  return relative('dist/test', file).split(sep).join('/').replace(/\.js$/, '.ts');
}

/** The index of the entry of `list` naming a built test file (`dist/test/...js`), or -1. */
function indexIn(list, file) {
  const source = sourceOf(file);
  return list.findIndex((entry) => names(entry, source));
}

/** Whether a SERIAL/ALONE/LONG entry (a file, or a folder ending in '/') names `source`. */
function names(entry, source) {
  return entry.endsWith('/') ? source.startsWith(entry) : source === entry;
}

/**
 * Splits built test files into the three groups npm test runs: `concurrent`
 * (LONG ones first), `serial` and `alone` (each in its list's order).
 */
export function groups(files) {
  const inOrder = (list) =>
    files.filter((f) => indexIn(list, f) !== -1).sort((a, b) => indexIn(list, a) - indexIn(list, b));
  const alone = inOrder(ALONE);
  const serial = inOrder(SERIAL).filter((f) => !alone.includes(f));
  const rest = files.filter((f) => !alone.includes(f) && !serial.includes(f));
  const rank = (f) => {
    const i = indexIn(LONG, f);
    return i === -1 ? LONG.length : i;
  };
  return { concurrent: [...rest].sort((a, b) => rank(a) - rank(b)), serial, alone };
}
