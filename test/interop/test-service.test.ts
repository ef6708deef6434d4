// grpchantesting.TestService as INTEROP.md describes the reference server:
// checked directly over grpc-js, so the interop programs serve the same.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { Status as RpcStatus } from '#grpctunnel/gen/google/rpc/status.js';
import { Message, TestServiceClient, TestServiceService } from '../../interop/gen/grpchantesting/test.js';
import { testServiceImplementation } from '../../interop/test-service.js';
import { startServer, stopServer } from '../helpers/servers.js';

describe('grpchantesting.TestService', () => {
  let client: TestServiceClient;
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  before(async () => {
    let address: string;
    ({ server, address } = await startServer((s) => s.addService(TestServiceService, testServiceImplementation())));
    client = new TestServiceClient(address, credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await stopServer(server);
  });

  it('unary: headers, trailers, echoed request metadata and payload', async () => {
    const md = new Metadata();
    // (Repeated values are joined by grpc-js's HTTP/2 transport; the
    // last-value rule is checked through a tunnel by the transcript replay.)
    md.set('x-req', 'b');
    const req = Message.fromPartial({
      payload: Buffer.from('p'),
      headers: { 'X-Hdr': Buffer.from('h') },
      trailers: { 'x-tr': Buffer.from('t') },
    });
    const { reply, headers, trailers } = await new Promise<{ reply: Message; headers: Metadata; trailers: Metadata }>(
      (resolve, reject) => {
        let headers = new Metadata();
        const call = client.unary(req, md, (err, reply) => {
          if (err) reject(err);
          call.on('status', (s) => resolve({ reply, headers, trailers: s.metadata }));
        });
        call.on('metadata', (h) => {
          headers = h;
        });
      },
    );
    assert.equal(headers.get('x-hdr')[0], 'h', 'header keys are lower-cased');
    assert.equal(trailers.get('x-tr')[0], 't');
    assert.equal(Buffer.from(reply.payload).toString(), 'p');
    assert.equal(Buffer.from(reply.headers['x-req'] ?? []).toString(), 'b', 'request metadata echoed');
  });

  it('unary: fails with the requested code, message "error" and the error details', async () => {
    const details = [{ typeUrl: 'type.googleapis.com/x.Y', value: Buffer.from([1, 2]) }];
    const err = await new Promise<ServiceError>((resolve) =>
      client.unary(Message.fromPartial({ code: status.ABORTED, errorDetails: details }), (e) =>
        resolve(e as ServiceError),
      ),
    );
    assert.equal(err.code, status.ABORTED);
    assert.equal(err.details, 'error');
    const decoded = RpcStatus.decode(err.metadata.get('grpc-status-details-bin')[0] as Buffer);
    assert.deepEqual(
      decoded.details.map((d) => [d.typeUrl, Buffer.from(d.value)]),
      details.map((d) => [d.typeUrl, d.value]),
    );
  });

  it('client stream: counts requests and stops at the first with a code', async () => {
    const ok = await new Promise<Message>((resolve, reject) => {
      const call = client.clientStream((e, r) => (e ? reject(e) : resolve(r)));
      for (let i = 0; i < 3; i++) call.write(Message.fromPartial({ payload: Buffer.from([i]) }));
      call.end();
    });
    assert.equal(ok.count, 3);
    assert.deepEqual([...ok.payload], [2]);
    const failed = await new Promise<ServiceError>((resolve) => {
      const call = client.clientStream((e) => resolve(e as ServiceError));
      call.write(Message.fromPartial({}));
      call.write(Message.fromPartial({ code: status.OUT_OF_RANGE }));
      call.end();
    });
    assert.equal(failed.code, status.OUT_OF_RANGE);
  });

  it('server stream: count responses, then the requested status', async () => {
    const replies: Message[] = [];
    const err = await new Promise<ServiceError | null>((resolve) => {
      const call = client.serverStream(
        Message.fromPartial({ count: 4, payload: Buffer.from('s'), code: status.DATA_LOSS }),
      );
      call.on('data', (m: Message) => replies.push(m));
      call.on('error', resolve);
      call.on('end', () => resolve(null));
    });
    assert.equal(replies.length, 4);
    assert.equal(err?.code, status.DATA_LOSS);
  });

  it('bidi stream: replies at once, or after half-close in half-duplex mode', async () => {
    for (const halfDuplex of [false, true]) {
      const call = client.bidiStream();
      const seen: Array<{ count: number; afterEnd: boolean }> = [];
      let ended = false;
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (m: Message) => seen.push({ count: m.count, afterEnd: ended }));
        call.on('error', reject);
        call.on('end', resolve);
      });
      call.write(Message.fromPartial({ count: halfDuplex ? -1 : 0 }));
      call.write(Message.fromPartial({}));
      if (halfDuplex) {
        // Nothing may come before the half-close, and nothing signals "the
        // server read both and held its replies": give a wrong early reply
        // time to show (an absence, so a wait, not a synchronisation).
        await new Promise((r) => setTimeout(r, 50));
      } else {
        // Full duplex: both replies come while the request stream is open.
        await new Promise<void>((resolve) => {
          const check = () => seen.length >= 2 && resolve();
          call.on('data', check);
          check();
        });
      }
      ended = true;
      call.end();
      await done;
      assert.deepEqual(
        seen.map((s) => s.count),
        [1, 2],
      );
      assert.equal(
        seen.every((s) => s.afterEnd),
        halfDuplex,
        halfDuplex ? 'half-duplex replies wait for the half-close' : 'full-duplex replies come at once',
      );
    }
  });

  it('UseExternalMessageTwice returns Empty', async () => {
    const r = await new Promise<object>((resolve, reject) =>
      client.useExternalMessageTwice({}, (e, v) => (e ? reject(e) : resolve(v))),
    );
    assert.deepEqual(r, {});
  });
});
