// Peer faults are not our errors: a peer sending garbage is answered with a
// status and logged below error level, a few lines a minute at most.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { logVerbosity, type Server, setLogger, setLogVerbosity, status } from '@grpc/grpc-js';
import { TunnelServiceHandler } from 'grpctunnel';
import { PeerFaultLog } from '#grpctunnel/grpc/peer-faults.js';
import { TestServiceService } from '../../interop/gen/grpchantesting/test.js';
import { testServiceImplementation } from '../../interop/test-service.js';
import { c2s, closeOf, rawClient, sendUnary } from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';

describe('peer fault log', () => {
  it('writes a few lines per interval and reports how many it left out', () => {
    let now = 0;
    const lines: string[] = [];
    const log = new PeerFaultLog({
      linesPerInterval: 3,
      intervalMs: 1000,
      now: () => now,
      write: (l) => lines.push(l),
    });
    for (let i = 0; i < 10; i++) log.log(`fault ${i}`);
    assert.deepEqual(lines, ['grpctunnel: fault 0', 'grpctunnel: fault 1', 'grpctunnel: fault 2']);
    now = 999;
    log.log('still the same interval');
    assert.equal(lines.length, 3);
    now = 1000;
    log.log('next interval');
    assert.deepEqual(lines.slice(3), ['grpctunnel: 8 more peer faults were not logged', 'grpctunnel: next interval']);
  });
});

describe('a peer sending malformed requests through a tunnel', () => {
  let server: Server;
  let address: string;
  const lines: Array<{ level: string; text: string }> = [];
  before(async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(TestServiceService, testServiceImplementation());
    ({ server, address } = await startServer((s) => handler.register(s)));
    const capture =
      (level: string) =>
      (message?: unknown, ...rest: unknown[]) =>
        lines.push({ level, text: [message, ...rest].map(String).join(' ') });
    setLogger({ error: capture('error'), info: capture('info'), debug: capture('debug') });
    setLogVerbosity(logVerbosity.INFO);
  });
  after(async () => {
    // grpc-js's own default logger (it exports no getter to save it with).
    setLogger({
      error: (m?: unknown, ...p: unknown[]) => console.error(`E ${m}`, ...p),
      info: (m?: unknown, ...p: unknown[]) => console.error(`I ${m}`, ...p),
      debug: (m?: unknown, ...p: unknown[]) => console.error(`D ${m}`, ...p),
    });
    setLogVerbosity(logVerbosity.ERROR);
    await stopServer(server);
  });

  // (First: the rate limit is process-wide, and the next test uses up this minute's lines.)
  it('logs a tunnel-level violation at info level, not error', async () => {
    const peer = rawClient(address);
    try {
      await peer.frames.next(); // settings
      peer.send(c2s.newStream(5, '/grpchantesting.TestService/BidiStream'));
      peer.send(c2s.newStream(5, '/grpchantesting.TestService/BidiStream'));
      const ended = await peer.status;
      assert.notEqual(ended.code, status.OK);
    } finally {
      peer.close();
    }
    const violation = lines.filter((l) => l.text.includes('cannot create stream ID 5'));
    assert.deepEqual(
      violation.map((l) => l.level),
      ['info'],
    );
  });

  it('gets INTERNAL on each call, no error-level log line, and a rate-limited info line', async () => {
    const peer = rawClient(address);
    try {
      await peer.frames.next(); // settings
      const garbage = Buffer.from([0x0a, 0x7f]); // a length-delimited field cut short
      const calls = 30;
      for (let id = 1; id <= calls; id++) sendUnary(peer, id, garbage, '/grpchantesting.TestService/Unary');
      for (let id = 1; id <= calls; id++) {
        const { status: s } = await closeOf(peer, id);
        assert.equal(s?.code, status.INTERNAL, `call ${id}`);
      }
      // The tunnel still serves good calls.
      sendUnary(peer, calls + 1, Buffer.alloc(0), '/grpchantesting.TestService/Unary');
      assert.equal((await closeOf(peer, calls + 1)).status, undefined);
    } finally {
      peer.close();
    }
    const ours = lines.filter((l) => l.text.includes('grpctunnel'));
    assert.deepEqual(
      ours.filter((l) => l.level === 'error'),
      [],
      'a peer fault logged at error level',
    );
    const parseLines = ours.filter((l) => l.text.includes('failed to parse a request'));
    assert.ok(parseLines.length >= 1 && parseLines.length <= 10, `${parseLines.length} lines for 30 bad messages`);
  });
});
