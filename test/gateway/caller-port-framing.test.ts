// The caller port reads gRPC's length-prefixed messages itself (node:http2,
// no grpc-js server): a message split anyhow across DATA frames arrives
// whole, and bad framing gets a clear status, never a crash or a hang.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { afterEach, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { attachAgent, cleanups, gatewayWith, runCleanups } from '../helpers/gateway-embed.js';
import { startEchoTarget, stopServer } from '../helpers/servers.js';

afterEach(runCleanups);

/** A gateway with one agent in front of the echo service; resolves to the caller port's address. */
async function gatewayWithAgent(): Promise<string> {
  const target = await startEchoTarget();
  cleanups.push(() => stopServer(target.server));
  const gw = await gatewayWith({});
  await attachAgent(gw, target.address);
  return gw.listenAddress;
}

/** Sends `pieces` as the request body of a unary echo call; the response body and grpc-status/message. */
function rawCall(address: string, pieces: Buffer[]) {
  return new Promise<{ body: Buffer; code: number; message: string }>((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': '/test.Echo/Unary',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let code = Number.NaN;
    let message = '';
    const read = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) code = Number(headers['grpc-status']);
      if (headers['grpc-message'] !== undefined) message = decodeURIComponent(String(headers['grpc-message']));
    };
    req.on('response', read);
    req.on('trailers', read);
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('close', () => {
      session.close();
      resolve({ body: Buffer.concat(chunks), code, message });
    });
    // One write per piece, each its own DATA frame.
    const writeNext = (i: number) => {
      if (i === pieces.length) {
        req.end();
        return;
      }
      req.write(pieces[i], () => writeNext(i + 1));
    };
    writeNext(0);
  });
}

const framed = (body: Buffer, flag = 0) => {
  const out = Buffer.alloc(5 + body.length);
  out[0] = flag;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
};

describe('the caller port reads gRPC framing', () => {
  it('reassembles a message split across DATA frames at every kind of boundary', async () => {
    const address = await gatewayWithAgent();
    const payload = Buffer.from('split across frames, prefix included');
    const whole = framed(payload);
    // Inside the prefix, right after it, and inside the body.
    const pieces = [whole.subarray(0, 2), whole.subarray(2, 5), whole.subarray(5, 9), whole.subarray(9)];
    const r = await rawCall(address, pieces);
    assert.equal(r.code, status.OK, r.message);
    assert.deepEqual(r.body, whole);
  });

  it('refuses a compressed message with UNIMPLEMENTED', async () => {
    const r = await rawCall(await gatewayWithAgent(), [framed(Buffer.from('zipped?'), 1)]);
    assert.equal(r.code, status.UNIMPLEMENTED);
    assert.match(r.message, /compressed messages are not supported/);
  });

  it('fails a request that ends in the middle of a message with INTERNAL', async () => {
    const whole = framed(Buffer.from('cut short'));
    const r = await rawCall(await gatewayWithAgent(), [whole.subarray(0, whole.length - 3)]);
    assert.equal(r.code, status.INTERNAL);
    assert.match(r.message, /ended in the middle of a message/);
  });

  it('refuses a message over the limit with RESOURCE_EXHAUSTED, in grpc-js words, and ignores what follows it', async () => {
    const address = await gatewayWithAgent();
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(5 * 1024 * 1024, 1);
    const r = await rawCall(address, [prefix, Buffer.alloc(1024), framed(Buffer.from('after'))]);
    assert.equal(r.code, status.RESOURCE_EXHAUSTED);
    assert.match(r.message, /^Received message larger than max \(5242880 vs 4194304\)$/);
    // The port goes on serving.
    const ok = await rawCall(address, [framed(Buffer.from('next'))]);
    assert.equal(ok.code, status.OK);
  });
});
