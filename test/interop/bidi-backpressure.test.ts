// The interop TestService's bidi handler honours write back-pressure as the
// Go one does: it reads the next request only once its reply is written.
// So a peer that never reads replies, and keeps sending past its window, is
// caught: RESOURCE_EXHAUSTED on that stream, the tunnel and its other
// streams unharmed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Server, status } from '@grpc/grpc-js';
import { TunnelServiceHandler } from 'grpctunnel';
import { Message, TestServiceService } from '../../interop/gen/grpchantesting/test.js';
import { testServiceImplementation } from '../../interop/test-service.js';
import { c2s, closeOf, rawClient, sendUnary } from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';

describe('interop TestService bidi handler under an overrunning peer', () => {
  let server: Server;
  let address: string;
  before(async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(TestServiceService, testServiceImplementation());
    ({ server, address } = await startServer((s) => handler.register(s)));
  });
  after(() => stopServer(server));

  it('fails only the overrunning stream with RESOURCE_EXHAUSTED', async () => {
    const peer = rawClient(address);
    try {
      await peer.frames.next(); // settings
      const request = Buffer.from(Message.encode(Message.fromPartial({ payload: Buffer.alloc(8000, 1) })).finish());
      // Stream 1: never credits the replies (so the handler's writes stall),
      // and sends 2.4 MB regardless of the window the server grants.
      peer.send(c2s.newStream(1, '/grpchantesting.TestService/BidiStream'));
      for (let i = 0; i < 300; i++) peer.send(c2s.message(1, request.length, request));
      // Stream 2 on the same tunnel: an ordinary call.
      sendUnary(
        peer,
        2,
        Buffer.from(Message.encode(Message.fromPartial({ payload: Buffer.from('ok') })).finish()),
        '/grpchantesting.TestService/Unary',
      );
      const closes = new Map<number, { code: number | undefined; message: string | undefined }>();
      const frames = await peer.frames.until((f) => {
        if (f.frame?.$case === 'closeStream') {
          closes.set(f.streamId, { code: f.frame.value.status?.code, message: f.frame.value.status?.message });
        }
        return closes.has(1) && closes.has(2);
      }, 10_000);
      assert.ok(frames.length > 0);
      assert.deepEqual(closes.get(1), { code: status.RESOURCE_EXHAUSTED, message: 'flow control window exceeded' });
      assert.deepEqual(closes.get(2), { code: undefined, message: undefined }, 'the other stream ends OK');
      // The tunnel is still up: a third call works.
      sendUnary(peer, 3, Buffer.alloc(0), '/grpchantesting.TestService/Unary');
      assert.equal((await closeOf(peer, 3)).status, undefined);
    } finally {
      peer.close();
    }
  });
});
