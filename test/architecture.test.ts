// The repository holds two packages: the library (packages/grpctunnel) and
// the gateway with its command (packages/gateway), which uses the library
// only as any user would, through its package entry points. Inside the
// library the folders of src/ are layers: each may import from its own
// folder and the layers below it, never from above, so that the protocol
// engine stays free of grpc-js and pools never reach into the handler that
// owns them. (Import cycles are caught by Biome's noImportCycles rule.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The library's sources; the paths the tests below name are relative to it. */
const SRC = `${ROOT}packages/grpctunnel/src/`;
const GATEWAY_SRC = `${ROOT}packages/gateway/src/`;
const INTEROP = `${ROOT}interop/`;

/** The library's layers, lower first; folders on one line do not import each other. */
const LAYERS: string[][] = [['gen'], ['engine'], ['grpc'], ['pool'], ['handler', 'reverse', 'proxy', 'connect']];
/** The gateway package's layers: the command is built on the embeddable gateway. */
const GATEWAY_LAYERS: string[][] = [['gateway'], ['cli']];
/** What the gateway package may import from the library: its entry points, nothing behind them. */
const LIBRARY_ENTRY_POINTS = new Set([
  'grpctunnel',
  'grpctunnel/protocol',
  'grpctunnel/internal',
  'grpctunnel/connect',
]);

/** The TypeScript files under `dir`, as paths relative to `base`. */
function sources(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => `${e.parentPath}/${e.name}`.slice(base.length));
}

/**
 * Every module specifier a file imports or re-exports, types included: static
 * imports and re-exports, side-effect imports and `import('...')` (in code or
 * in a type).
 */
function imports(file: string, dir = SRC): string[] {
  const text = readFileSync(dir + file, 'utf8');
  return [
    ...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms),
    ...text.matchAll(/^import\s+'([^']+)'/gm),
    ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1] as string);
}

/** Where a relative specifier in `file` lands, relative to the same src/ ('../x' when it leaves it). */
function targetOf(file: string, specifier: string): string {
  const target = new URL(specifier, `file:///src/${file}`).pathname;
  return target.startsWith('/src/') ? target.slice('/src/'.length) : `..${target}`;
}

/** The top folder of src/ a relative specifier in `file` lands in ('' for src/ itself). */
function folderOf(file: string, specifier: string): string {
  const target = targetOf(file, specifier);
  return target.includes('/') ? (target.split('/')[0] as string) : '';
}

/** Layering violations among the folders of one package's src/. */
function layerViolations(dir: string, layers: string[][]): string[] {
  const rank = new Map(layers.flatMap((folders, i) => folders.map((f): [string, number] => [f, i])));
  const violations: string[] = [];
  for (const file of sources(dir)) {
    const from = file.includes('/') ? (file.split('/')[0] as string) : '';
    if (from !== '' && !rank.has(from)) violations.push(`${file} is in no layer`);
    if (from === '' || from === 'gen') continue; // the entry points sit on top; generated code imports only itself
    for (const specifier of imports(file, dir)) {
      if (!specifier.startsWith('.')) continue;
      const to = folderOf(file, specifier);
      if (to === from) continue;
      if (to === '' || (rank.get(to) ?? Number.POSITIVE_INFINITY) >= (rank.get(from) as number)) {
        violations.push(`${file} imports ${specifier}`);
      }
    }
  }
  return violations;
}

/** The package name a bare specifier names ('@scope/name' or 'name'), or undefined for node: and built-ins. */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('node:') || builtinModules.includes(specifier)) return undefined;
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** Bare imports of a package's sources that its package.json does not declare. */
function undeclared(dir: string, manifest: string): string[] {
  const pkg = JSON.parse(readFileSync(manifest, 'utf8'));
  const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
  return sources(dir).flatMap((file) =>
    imports(file, dir)
      .filter((s) => !s.startsWith('.'))
      .filter((s) => {
        const name = packageOf(s);
        return name !== undefined && !declared.has(name);
      })
      .map((s) => `${file} imports ${s}`),
  );
}

it('no layer imports from a layer above it or beside it, in either package', () => {
  assert.deepEqual(layerViolations(SRC, LAYERS), []);
  assert.deepEqual(layerViolations(GATEWAY_SRC, GATEWAY_LAYERS), []);
});

it('each package imports only what its package.json declares', () => {
  // A library user installs exactly the library's dependencies: an import the
  // manifest does not name would work here (hoisted) and fail for them.
  assert.deepEqual(undeclared(SRC, `${ROOT}packages/grpctunnel/package.json`), []);
  assert.deepEqual(undeclared(GATEWAY_SRC, `${ROOT}packages/gateway/package.json`), []);
  const library = JSON.parse(readFileSync(`${ROOT}packages/grpctunnel/package.json`, 'utf8'));
  // The library's one runtime dependency; grpc-js and Connect-ES are peers.
  assert.deepEqual(Object.keys(library.dependencies), ['@bufbuild/protobuf']);
});

it('the library imports nothing outside its own src/', () => {
  const leaving = sources(SRC).flatMap((file) =>
    imports(file)
      .filter(
        (s) =>
          (s.startsWith('.') && targetOf(file, s).startsWith('..')) || s.startsWith('#') || s.startsWith('grpctunnel'),
      )
      .map((s) => `${file} imports ${s}`),
  );
  assert.deepEqual(leaving, []);
});

it('the gateway package and the interop programs reach the library only through its entry points', () => {
  // They use the library as a user would: through the package's entry points
  // (the gateway also through grpctunnel/internal, its companion API), never
  // by a relative path into its sources or a subpath import behind them.
  const violations: string[] = [];
  let checked = 0;
  const scan = (dir: string, allowed: Set<string>, mayLeave: (specifier: string) => boolean) => {
    for (const file of sources(dir)) {
      for (const specifier of imports(file, dir)) {
        if (specifier.startsWith('.')) {
          if (targetOf(file, specifier).startsWith('..') && !mayLeave(specifier))
            violations.push(`${file} imports ${specifier}`);
          continue;
        }
        if (!specifier.startsWith('grpctunnel') && !specifier.startsWith('#')) continue;
        checked++;
        if (!allowed.has(specifier) && !mayLeave(specifier)) violations.push(`${file} imports ${specifier}`);
      }
    }
  };
  scan(GATEWAY_SRC, LIBRARY_ENTRY_POINTS, () => false);
  // The interop programs are not published: they share the command's flag parser.
  const publicEntries = new Set([...LIBRARY_ENTRY_POINTS].filter((e) => e !== 'grpctunnel/internal'));
  scan(INTEROP, publicEntries, (s) => s === '#gateway/cli/flags.js');
  assert.ok(checked > 15);
  assert.deepEqual(violations, []);
});

it('the protocol engine does not import grpc-js or Node', () => {
  const engine = sources(`${SRC}engine/`, SRC);
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
  for (const path of sources(`${SRC}engine/`, SRC)) {
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

it('only the gateway package uses prom-client', () => {
  const uses = (dir: string) =>
    sources(dir).filter((file) => imports(file, dir).some((s) => s === 'prom-client' || s.startsWith('prom-client/')));
  assert.ok(uses(GATEWAY_SRC).length > 0);
  assert.deepEqual(uses(SRC), []);
});

it('only connect/ in the library imports Connect-ES, and the main entry point does not import it', () => {
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

it('the two halves of grpc/ in the library (client and server) do not import each other', () => {
  // Both roles run on every process (a reverse tunnel server is a gRPC client
  // that serves calls): what they share lives in grpc/ itself, below both.
  const crossing = sources(`${SRC}grpc/`, SRC).flatMap((file) => {
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

it('only grpc/tunnel-rpc.ts sends and reads the negotiation headers of tunnel RPCs', () => {
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
