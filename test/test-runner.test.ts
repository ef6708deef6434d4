// How npm test picks its files (scripts/test-files.mjs, scripts/prune-dist.mjs):
// a compiled test whose source is gone neither stays in dist/ after a build
// nor runs, and the lists that say how a file runs name files that exist.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FILES = new URL('../../scripts/test-files.mjs', import.meta.url).href;

interface TestFilesModule {
  SERIAL: string[];
  ALONE: string[];
  LONG: string[];
  testSources(root?: string): string[];
  testFiles(wanted?: string[], root?: string): string[];
  groups(files: string[]): { concurrent: string[]; serial: string[]; alone: string[] };
}
const load = async () => (await import(FILES)) as TestFilesModule;

/** Writes a compiled test (and its map) whose source does not exist; returns its paths. */
function staleTest(): string[] {
  const base = join(ROOT, 'dist', 'test', 'stale-runner-check', `gone-${process.pid}.test`);
  mkdirSync(dirname(base), { recursive: true });
  const files = [`${base}.js`, `${base}.js.map`, `${base}.d.ts`];
  for (const f of files) writeFileSync(f, "import { it } from 'node:test'; it('stale', () => {});\n");
  return files;
}

it('the build prunes a compiled test whose source is gone, and leaves the others', async () => {
  const stale = staleTest();
  try {
    const kept = join(ROOT, 'dist', 'test', 'test-runner.test.js');
    await promisify(execFile)(process.execPath, ['scripts/prune-dist.mjs'], { cwd: ROOT });
    assert.deepEqual(
      stale.filter((f) => existsSync(f)),
      [],
    );
    assert.ok(existsSync(kept), 'a test with a source stays');
  } finally {
    rmSync(join(ROOT, 'dist', 'test', 'stale-runner-check'), { recursive: true, force: true });
  }
});

it('only tests whose sources exist are listed, each in exactly one group', async () => {
  const { testFiles, testSources, groups } = await load();
  const stale = staleTest();
  try {
    assert.ok(
      stale.every((f) => existsSync(f)),
      'a stale compiled test sits in dist/test',
    );
    const files = testFiles();
    assert.equal(
      files.some((f) => f.includes('stale-runner-check')),
      false,
    );
    assert.equal(files.length, testSources().length);
    assert.ok(files.includes('dist/test/test-runner.test.js'));
    const { concurrent, serial, alone } = groups(files);
    assert.deepEqual([...concurrent, ...serial, ...alone].sort(), [...files].sort());
    assert.deepEqual(testFiles(['test/grpc/lifecycle.test.ts']), ['dist/test/grpc/lifecycle.test.js']);
    assert.deepEqual(testFiles(['dist/test/grpc/lifecycle.test.js']), ['dist/test/grpc/lifecycle.test.js']);
    assert.ok(testFiles(['test/pool']).every((f) => f.startsWith('dist/test/pool/')));
  } finally {
    rmSync(join(ROOT, 'dist', 'test', 'stale-runner-check'), { recursive: true, force: true });
  }
});

it('SERIAL, ALONE and LONG name test files that exist (a moved test would silently lose its group)', async () => {
  const { SERIAL, ALONE, LONG, testSources } = await load();
  const sources = testSources();
  const missing = [...SERIAL, ...ALONE, ...LONG].filter((entry) =>
    entry.endsWith('/') ? !sources.some((s) => s.startsWith(entry)) : !sources.includes(entry),
  );
  assert.deepEqual(missing, []);
});
