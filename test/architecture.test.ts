// The folders of src/ are layers: each may import from its own folder and
// the layers below it, never from above, so that the protocol engine stays
// free of grpc-js and pools never reach into the handler that owns them.
// (Import cycles are caught by Biome's noImportCycles rule.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Lower layers first; folders on one line do not import each other. */
const LAYERS: string[][] = [
  ['gen'],
  ['engine'],
  ['grpc'],
  ['pool'],
  ['handler', 'reverse', 'proxy', 'connect'],
  ['gateway'],
  ['cli'],
  ['interop'],
];
/**
 * The gateway and the programs built on the library (the companion packages
 * to be) use it through its entry points at the top of src/ (index.ts,
 * protocol.ts, internal.ts), like any user would through the package.
 */
const COMPANIONS = new Set(['gateway', 'cli', 'interop']);
/** The library's modules the companions may import: its entry points, nothing behind them. */
const ENTRY_POINTS = new Set(['index.ts', 'protocol.ts', 'internal.ts', 'connect/index.ts']);
const rank = new Map(LAYERS.flatMap((folders, i) => folders.map((f): [string, number] => [f, i])));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => `${e.parentPath}/${e.name}`.slice(SRC.length));
}

/**
 * Every module specifier a file imports or re-exports, types included: static
 * imports and re-exports, side-effect imports and `import('...')` (in code or
 * in a type).
 */
function imports(file: string): string[] {
  const text = readFileSync(SRC + file, 'utf8');
  return [
    ...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms),
    ...text.matchAll(/^import\s+'([^']+)'/gm),
    ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1] as string);
}

/** The top folder of src/ a relative specifier in `file` lands in ('' for src/ itself). */
function folderOf(file: string, specifier: string): string {
  const target = new URL(specifier, `file:///src/${file}`).pathname.slice('/src/'.length);
  return target.includes('/') ? (target.split('/')[0] as string) : '';
}

it('every src folder is a known layer', () => {
  const folders = new Set(sources(SRC).map((f) => (f.includes('/') ? (f.split('/')[0] as string) : '')));
  folders.delete('');
  assert.deepEqual(
    [...folders].filter((f) => !rank.has(f)),
    [],
  );
});

it('no layer imports from a layer above it or beside it', () => {
  const violations: string[] = [];
  for (const file of sources(SRC)) {
    const from = file.includes('/') ? (file.split('/')[0] as string) : '';
    if (from === '' || from === 'gen') continue; // index.ts sits on top; generated code imports only itself
    for (const specifier of imports(file)) {
      if (!specifier.startsWith('.')) continue;
      const to = folderOf(file, specifier);
      if (to === from) continue;
      if (to === '' && COMPANIONS.has(from)) continue;
      if (to === '' || (rank.get(to) ?? Number.POSITIVE_INFINITY) >= (rank.get(from) as number)) {
        violations.push(`${file} imports ${specifier}`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

it('the gateway and the CLI reach the library only through its entry points', () => {
  // The gateway, the CLI and the interop programs are to become a package of
  // their own that depends on the library's package: whatever they import from
  // it must then be reachable through an entry point, so they may not reach
  // behind one today. (Which way the companions import each other is the
  // layering test's business.)
  const violations: string[] = [];
  let checked = 0;
  for (const file of sources(SRC)) {
    const from = file.split('/')[0] as string;
    if (!file.includes('/') || !COMPANIONS.has(from)) continue;
    for (const specifier of imports(file)) {
      if (!specifier.startsWith('.')) continue;
      checked++;
      if (COMPANIONS.has(folderOf(file, specifier))) continue;
      const target = new URL(specifier, `file:///src/${file}`).pathname.slice('/src/'.length).replace(/\.js$/, '.ts');
      if (!ENTRY_POINTS.has(target)) violations.push(`${file} imports ${specifier}`);
    }
  }
  assert.ok(checked > 20);
  assert.deepEqual(violations, []);
});

it('the protocol engine does not import grpc-js or Node', () => {
  const engine = sources(`${SRC}engine/`);
  assert.ok(engine.length > 5);
  const foreign = engine.flatMap((file) =>
    imports(file)
      .filter((s) => !s.startsWith('.'))
      .map((s) => `${file} imports ${s}`),
  );
  assert.deepEqual(foreign, []);
});

/**
 * The engine's two platform dependencies, stated rather than hidden: it hands
 * messages up as Node `Buffer`s (zero-copy views: grpc-js wants Buffers, and
 * converting in the adapter would copy every chunk), and batches window
 * updates with `setImmediate` by default (injectable: WindowUpdates' `defer`).
 * Everything else it needs is in the language (queueMicrotask, Uint8Array).
 */
const ENGINE_GLOBALS: Record<string, string[]> = {
  Buffer: ['inbound.ts', 'tunnel-client.ts', 'tunnel-server.ts'],
  setImmediate: ['window-updates.ts'],
};
/** Host globals that would tie the engine to Node, timers or I/O. */
const HOST_GLOBALS = [
  'Buffer',
  'setImmediate',
  'clearImmediate',
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
  'process',
  'require',
  'module',
  '__dirname',
  '__filename',
  'global',
  'globalThis',
  'fetch',
  'console',
  'performance',
];

it('the protocol engine uses no host globals beyond the two it states', () => {
  const used: string[] = [];
  for (const path of sources(`${SRC}engine/`)) {
    const file = path.split('/').at(-1) as string;
    const scanner = ts.createScanner(ts.ScriptTarget.Latest, true, ts.LanguageVariant.Standard);
    scanner.setText(readFileSync(`${SRC}engine/${file}`, 'utf8'));
    let previous = ts.SyntaxKind.Unknown;
    for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
      const name = scanner.getTokenText();
      // A property name (x.process, { process: 1 }) is not a global.
      if (kind === ts.SyntaxKind.Identifier && previous !== ts.SyntaxKind.DotToken && HOST_GLOBALS.includes(name)) {
        if (!ENGINE_GLOBALS[name]?.includes(file)) used.push(`${file} uses ${name}`);
      }
      previous = kind;
    }
  }
  assert.deepEqual([...new Set(used)], []);
});

it('only the gateway layer and the programs above it use prom-client', () => {
  const users = sources(SRC).filter((file) =>
    imports(file).some((s) => s === 'prom-client' || s.startsWith('prom-client/')),
  );
  assert.ok(users.length > 0);
  assert.deepEqual(
    users.filter((file) => !['gateway', 'cli'].includes(file.split('/')[0] as string)),
    [],
  );
});

it('only src/connect imports Connect-ES, and the main entry point does not import src/connect', () => {
  // @connectrpc/connect is an optional peer dependency: everything the main
  // entry point loads must work without it (test/package.test.ts checks the
  // installed package); only the grpctunnel/connect subpath may need it.
  const outside = sources(SRC)
    .filter((file) => !file.startsWith('connect/'))
    .flatMap((file) =>
      imports(file)
        .filter((s) => s.startsWith('@connectrpc/') || (file === 'index.ts' && folderOf(file, s) === 'connect'))
        .map((s) => `${file} imports ${s}`),
    );
  assert.deepEqual(outside, []);
  assert.ok(imports('connect/transport.ts').some((s) => s.startsWith('@connectrpc/')));
});

it('the two halves of src/grpc (client and server) do not import each other', () => {
  // Both roles run on every process (a reverse tunnel server is a gRPC client
  // that serves calls): what they share lives in src/grpc itself, below both.
  const crossing = sources(`${SRC}grpc/`).flatMap((file) => {
    const side = file.split('/')[1];
    if (side !== 'client' && side !== 'server') return [];
    const other = side === 'client' ? 'server' : 'client';
    return imports(file)
      .filter((s) => s.startsWith('.'))
      .filter((s) => new URL(s, `file:///src/${file}`).pathname.startsWith(`/src/grpc/${other}/`))
      .map((s) => `${file} imports ${s}`);
  });
  assert.deepEqual(crossing, []);
});

it('only src/grpc/tunnel-rpc.ts sends and reads the negotiation headers of tunnel RPCs', () => {
  // One rule, one place: openTunnel, the handler and the reverse tunnel
  // server all run their tunnel RPCs through tunnel-rpc.ts, so no site can
  // forget a header or read one differently from the others.
  const helpers = ['NEGOTIATE_HEADER', 'DRAIN_HEADER', 'advertiseChunkSize', 'takePeerChunkOffer', 'tunnelChunkSizes'];
  /** Where the headers and their helpers are defined or re-exported for users. */
  const owners = new Set(['engine/constants.ts', 'grpc/drain-notice.ts', 'grpc/chunk-size.ts', 'protocol.ts']);
  const users = sources(SRC)
    .map((file) => file.replace(/^\//, ''))
    .filter((file) => !file.startsWith('gen/') && !owners.has(file) && file !== 'grpc/tunnel-rpc.ts')
    .flatMap((file) => {
      const text = readFileSync(SRC + file, 'utf8');
      return helpers.filter((name) => new RegExp(`\\b${name}\\b`).test(text)).map((name) => `${file} uses ${name}`);
    });
  assert.deepEqual(users, []);
});
