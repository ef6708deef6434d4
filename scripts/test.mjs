#!/usr/bin/env node
// npm test: runs the built tests (npm run build first; `pretest` does it).
//
//   node scripts/test.mjs [node --test flags...] [test files or folders...]
//
// Files and folders may be named as sources (test/grpc) or as built files
// (dist/test/grpc/lifecycle.test.js); none means every test. Only tests whose
// source exists run (see scripts/test-files.mjs).
//
// Two groups, one after the other: most files run concurrently, one process
// per file (TEST_CONCURRENCY at once, default 4: the files wait on sockets
// and timers far more than they compute, so even 2 cores keep up); then the
// files in SERIAL run one at a time, alone on the machine, because they start
// many processes or measure time.
import { spawn } from 'node:child_process';
import { isSerial, ROOT, testFiles } from './test-files.mjs';

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
const files = testFiles(args.filter((a) => !a.startsWith('--')));
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 4);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  throw new RangeError(`TEST_CONCURRENCY must be a positive integer, got ${process.env.TEST_CONCURRENCY}`);
}

/** Runs one `node --test` over `group`; resolves with its exit code. */
function run(group, n) {
  if (group.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    ['--test', `--test-concurrency=${n}`, '--test-timeout=120000', '--test-force-exit', ...flags, ...group],
    { cwd: ROOT, stdio: 'inherit' },
  );
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const started = Date.now();
const concurrent = await run(
  files.filter((f) => !isSerial(f)),
  concurrency,
);
const serial = await run(files.filter(isSerial), 1);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.error(`# ${files.length} test files in ${seconds} s (concurrent group: ${concurrency} at once)`);
process.exitCode = concurrent || serial;
