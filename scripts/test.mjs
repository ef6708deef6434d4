#!/usr/bin/env node
// npm test: runs the built tests (`pretest` builds them first).
//
//   node scripts/test.mjs [node --test flags...] [test files or folders...]
//
// Files and folders may be named as sources (test/grpc) or as built files
// (dist/test/grpc/lifecycle.test.js); none means every test. Only tests whose
// source exists run (see scripts/test-files.mjs).
//
// One process per test file, in two lanes side by side, then a last phase:
// - the concurrent lane: most files, TEST_CONCURRENCY at once (default 4),
//   the LONG ones first. They wait on sockets and timers far more than they
//   compute, so even 2 cores keep up.
// - the serial lane: the SERIAL files, one at a time, so no two of the
//   heavy or timing-bound ones ever overlap.
// - then the ALONE files, one at a time, with nothing else running.
// The concurrent lane's output streams live; the serial lane's is held until
// the concurrent lane ends, so the two never interleave.
import { spawn } from 'node:child_process';
import { groups, ROOT, testFiles } from './test-files.mjs';

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
// A terminal gets the readable reporter (the child's stdout is a pipe, so it would pick TAP).
if (process.stdout.isTTY && !flags.some((f) => f.startsWith('--test-reporter'))) flags.push('--test-reporter=spec');
const files = testFiles(args.filter((a) => !a.startsWith('--')));
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 4);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  throw new RangeError(`TEST_CONCURRENCY must be a positive integer, got ${process.env.TEST_CONCURRENCY}`);
}

/** Runs `node --test` over `group`, `n` files at once, writing its output through `out`. */
function lane(group, n, out) {
  if (group.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    ['--test', `--test-concurrency=${n}`, '--test-timeout=120000', '--test-force-exit', ...flags, ...group],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout.on('data', (b) => out(process.stdout, b));
  child.stderr.on('data', (b) => out(process.stderr, b));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const held = [];
let holding = true;
const live = (stream, chunk) => stream.write(chunk);
const serialOut = (stream, chunk) => (holding ? held.push([stream, chunk]) : stream.write(chunk));

const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
const { concurrent: concurrentFiles, serial: serialFiles, alone: aloneFiles } = groups(files);
const [concurrent, serial] = await Promise.all([
  lane(concurrentFiles, concurrency, live).then((code) => {
    console.error(`# concurrent lane: ${concurrentFiles.length} files, ${concurrency} at once, ${seconds()} s`);
    holding = false;
    for (const [stream, chunk] of held.splice(0)) stream.write(chunk);
    return code;
  }),
  lane(serialFiles, 1, serialOut).then((code) => {
    serialOut(process.stderr, `# serial lane: ${serialFiles.length} files, one at a time, ${seconds()} s\n`);
    return code;
  }),
]);
const alone = await lane(aloneFiles, 1, live);
if (aloneFiles.length > 0) console.error(`# alone: ${aloneFiles.length} files, ${seconds()} s`);
console.error(`# ${files.length} test files in ${seconds()} s`);
process.exitCode = concurrent || serial || alone;
