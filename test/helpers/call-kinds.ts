// The behaviour every tunnel must show for the four call kinds, run against
// any fixture (forward or reverse, either protocol revision).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { Status as RpcStatus } from '#grpctunnel/gen/google/rpc/status.js';
import { clientStream, collect, serverStream, unary } from './calls.js';
import type { EchoClient, EchoObservations } from './echo-service.js';

/** What the shared tests need from a fixture. */
export interface EchoTunnel {
  echo: EchoClient;
  seen: EchoObservations;
}

/** Declares the call-kind tests (inside a describe) against the fixture that `f` returns. */
export function callKindTests(f: () => EchoTunnel): void {
  it('unary echoes messages of every size class', async () => {
    for (const size of [0, 1, 16384, 16385, 200_000]) {
      const req = Buffer.alloc(size, 7);
      const r = await unary(f().echo, req);
      assert.equal(r.error, null, `size ${size}`);
      assert.equal(r.value?.length, size);
      assert.ok(r.value?.equals(req));
    }
  });

  it('client streaming counts messages', async () => {
    const r = await clientStream(f().echo, [Buffer.alloc(10), Buffer.alloc(20000), Buffer.alloc(0)]);
    assert.equal(r.error, null);
    assert.deepEqual(JSON.parse(r.value?.toString() ?? ''), { count: 3, total: 20010 });
  });

  it('server streaming delivers every message in order', async () => {
    const r = await collect(serverStream(f().echo, 20, 30000));
    assert.equal(r.error, null);
    assert.equal(r.messages.length, 20);
    r.messages.forEach((m, i) => {
      assert.equal(m.length, 30000);
      assert.equal(m[0], i);
    });
  });

  it('bidi streaming echoes', async () => {
    const call = f().echo.bidi();
    const done = collect(call);
    for (let i = 0; i < 10; i++) call.write(Buffer.alloc(i * 5000, i));
    call.end();
    const r = await done;
    assert.equal(r.error, null);
    assert.deepEqual(
      r.messages.map((m) => m.length),
      Array.from({ length: 10 }, (_, i) => i * 5000),
    );
  });

  it('carries metadata, response headers, trailers and -bin values', async () => {
    const md = new Metadata();
    const binary = Buffer.from([0, 1, 2, 255, 254, 0x80, 0xc3]);
    md.set('x-echo-text', 'hello');
    md.set('x-echo-data-bin', binary);
    md.set('x-trailer-t', 'bye');
    const r = await unary(f().echo, Buffer.from('x'), md);
    assert.equal(r.error, null);
    assert.equal(r.headers?.get('x-echo-text')[0], 'hello');
    assert.deepEqual(r.headers?.get('x-echo-data-bin')[0], binary);
    assert.equal(r.status?.metadata.get('x-trailer-t')[0], 'bye');
    assert.equal(f().seen.lastMetadata?.get('x-echo-text')[0], 'hello');
  });

  it('reports status codes, messages and details', async () => {
    const md = new Metadata();
    md.set('x-status-code', String(status.NOT_FOUND));
    md.set('x-status-message', 'no such thing');
    const r = await unary(f().echo, Buffer.from('x'), md);
    assert.equal(r.error?.code, status.NOT_FOUND);
    assert.equal(r.error?.details, 'no such thing');
  });

  it('carries status details (grpc-status-details-bin) intact', async () => {
    const md = new Metadata();
    const sent = RpcStatus.encode({
      code: status.FAILED_PRECONDITION,
      message: 'not yet',
      details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from([10, 3, 0xff, 0, 1]) }],
    }).finish();
    md.set('x-status-code', String(status.FAILED_PRECONDITION));
    md.set('x-status-message', 'not yet');
    md.set('x-status-details-bin', Buffer.from(sent));
    const r = await unary(f().echo, Buffer.from('x'), md);
    assert.equal(r.error?.code, status.FAILED_PRECONDITION);
    assert.equal(r.error?.details, 'not yet');
    assert.deepEqual(r.error?.metadata.get('grpc-status-details-bin')[0], Buffer.from(sent));
  });
}
