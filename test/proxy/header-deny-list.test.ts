// One deny-list of one-hop headers: what the gateway's any-method endpoint
// forwards of a caller's headers is what a tunnel would carry of them.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { serveAnyMethod } from '#gateway/gateway/any-method-server.js';
import { fromWireMetadata, toWireMetadata } from '#grpctunnel/grpc/metadata.js';

it('the gateway forwards the headers a tunnel carries, no more', async () => {
  let routed: Metadata | undefined;
  const front = http2.createServer();
  serveAnyMethod(front, {
    route: (_path, metadata) => {
      routed = metadata;
      return { refuse: { code: status.UNAVAILABLE, details: 'test', metadata: new Metadata() } };
    },
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(front.address() as AddressInfo).port}`);
  // Application headers, and headers that belong to one hop (some odd in a request, all legal HTTP/2).
  const sent = {
    'x-app': 'kept',
    'x-app-bin': Buffer.from('kept').toString('base64'),
    host: 'example.com',
    'grpc-status': '0',
    'grpc-message': 'stale',
    'user-agent': 'grpc-node-js/1',
    'grpc-accept-encoding': 'identity',
    'content-length': '0',
  };
  const request = session.request({
    ':method': 'POST',
    ':path': '/deny.Test/Call',
    'content-type': 'application/grpc',
    te: 'trailers',
    ...sent,
  });
  request.end();
  const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => request.on('response', resolve));
  request.resume();
  await new Promise((resolve) => request.on('close', resolve));
  session.close();
  await new Promise((resolve) => front.close(resolve));
  assert.equal(trailers['grpc-status'], String(status.UNAVAILABLE));

  const asMetadata = Metadata.fromHttp2Headers({ 'content-type': 'application/grpc', te: 'trailers', ...sent });
  const carried = Object.keys(fromWireMetadata(toWireMetadata(asMetadata)).toJSON()).sort();
  assert.deepEqual(carried, ['x-app', 'x-app-bin']);
  assert.deepEqual(Object.keys(routed?.toJSON() ?? {}).sort(), carried);
});
