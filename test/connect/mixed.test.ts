// Mixed stacks: a grpc-js client calling a Connect-ES implementation through
// a tunnel, and a Connect-ES client calling a grpc-js implementation through
// a tunnel. Each is compared with the same pair talking without a tunnel
// (grpc-js client -> connect-node server; Connect's gRPC transport -> grpc-js server).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, decodeBinaryHeader, type Transport } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import {
  type Client,
  credentials,
  Client as GrpcClient,
  Metadata,
  makeGenericClientConstructor,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type StatusObject,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { connectServiceDefinition, createTunnelTransport } from 'grpctunnel/connect';
import { Status as RpcStatus } from '#grpctunnel/gen/google/rpc/status.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';
import { EchoService, echoImpl, newSeen } from './echo-impl.js';
import {
  type EchoReply,
  EchoReplySchema,
  type EchoRequest,
  EchoRequestSchema,
  ErrorDetailSchema,
} from './gen/connecttest/echo_pb.js';

after(stopAllServers);

const { definition } = connectServiceDefinition(EchoService, {});
const GrpcEchoClient = makeGenericClientConstructor(definition, 'EchoService') as unknown as new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: object,
) => Client & { unary: (...args: unknown[]) => any; serverStream: (...args: unknown[]) => any };

function appMetadata(metadata: Metadata): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    if (key.startsWith('x-')) out[key] = values.map((v) => (Buffer.isBuffer(v) ? [...v] : v));
  }
  return out;
}

/** What a grpc-js client observes of a unary call and a server stream. */
async function grpcJsObservations(
  client: Client & { unary: (...args: unknown[]) => any; serverStream: (...args: unknown[]) => any },
) {
  const unary = (req: MessageInitShape<typeof EchoRequestSchema>) =>
    new Promise<unknown>((resolve) => {
      const md = new Metadata();
      md.set('x-ascii', 'v1');
      md.set('x-data-bin', Buffer.from([1, 2, 255]));
      const seen: Record<string, unknown> = {};
      const call = client.unary(create(EchoRequestSchema, req), md, (err: ServiceError | null, reply?: EchoReply) => {
        if (err) {
          const details = err.metadata.get('grpc-status-details-bin')[0] as Buffer | undefined;
          const rich = details && RpcStatus.decode(details);
          seen.error = {
            code: err.code,
            details: err.details,
            rich: rich && { code: rich.code, message: rich.message, types: rich.details.map((d) => d.typeUrl) },
          };
        } else seen.reply = reply?.text;
      });
      call.on('metadata', (m: Metadata) => (seen.header = appMetadata(m)));
      call.on('status', (s: StatusObject) => resolve({ ...seen, trailer: appMetadata(s.metadata) }));
    });
  const stream = (req: MessageInitShape<typeof EchoRequestSchema>) =>
    new Promise<unknown>((resolve) => {
      const replies: unknown[] = [];
      const call = client.serverStream(create(EchoRequestSchema, req));
      call.on('data', (m: EchoReply) => replies.push([m.text, m.index]));
      call.on('error', () => {});
      call.on('status', (s: StatusObject) =>
        resolve({ replies, code: s.code, details: s.details, trailer: appMetadata(s.metadata) }),
      );
    });
  return {
    ok: await unary({ text: 'hi' }),
    failed: await unary({ failCode: Code.PermissionDenied, failMessage: 'not you' }),
    plain: await unary({ failPlain: true }),
    stream: await stream({ text: 's', repeat: 2 }),
    streamFailed: await stream({ text: 's', repeat: 1, failCode: Code.Unavailable, failMessage: 'later' }),
  };
}

describe('a grpc-js client calling a Connect implementation', () => {
  it('through a forward tunnel observes what it observes calling connect-node directly', async () => {
    const seen = newSeen();
    const h2 = http2.createServer(connectNodeAdapter({ routes: (r) => r.service(EchoService, echoImpl(seen)) }));
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    const direct = new GrpcEchoClient(`127.0.0.1:${(h2.address() as AddressInfo).port}`, credentials.createInsecure());

    const handler = new TunnelServiceHandler();
    const { definition: def, implementation } = connectServiceDefinition(EchoService, echoImpl(seen), {
      onInternalError: () => {},
    });
    handler.addService(def, implementation);
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const tunneled = new GrpcEchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
    try {
      const expected = await grpcJsObservations(direct);
      assert.deepEqual(await grpcJsObservations(tunneled), expected);
      // The details travel as a google.rpc.Status a grpc-js (or Go) caller decodes.
      assert.deepEqual((expected.failed as { error: { rich: unknown } }).error.rich, {
        code: Code.PermissionDenied,
        message: 'not you',
        types: ['type.googleapis.com/connecttest.ErrorDetail'],
      });
    } finally {
      direct.close();
      tunnel.close();
      connection.close();
      await stopServer(server);
      await new Promise((resolve) => h2.close(resolve));
    }
  });
});

/** A grpc-js implementation of the echo service, answering as the Connect one does. */
const grpcJsImpl = {
  unary(call: ServerUnaryCall<EchoRequest, EchoReply>, callback: sendUnaryData<EchoReply>) {
    const header = new Metadata();
    for (const [key, values] of Object.entries(call.metadata.toJSON())) {
      if (key.startsWith('x-')) for (const v of values) header.add(key, v);
    }
    call.sendMetadata(header);
    const trailer = new Metadata();
    trailer.set('x-trailer', 'done');
    trailer.set('x-trailer-bin', Buffer.from([0, 1, 2, 250, 255]));
    const req = call.request;
    if (req.failCode !== 0) {
      const detail = toBinary(ErrorDetailSchema, create(ErrorDetailSchema, { reason: 'because', attempt: 3 }));
      trailer.set('x-error', 'yes');
      trailer.set(
        'grpc-status-details-bin',
        Buffer.from(
          RpcStatus.encode({
            code: req.failCode,
            message: req.failMessage,
            details: [{ typeUrl: 'type.googleapis.com/connecttest.ErrorDetail', value: detail }],
          }).finish(),
        ),
      );
      callback({ code: req.failCode, details: req.failMessage, metadata: trailer });
      return;
    }
    callback(null, create(EchoReplySchema, { text: `${req.text}!` }), trailer);
  },
  serverStream(call: ServerWritableStream<EchoRequest, EchoReply>) {
    for (let index = 0; index < call.request.repeat; index++) call.write(create(EchoReplySchema, { text: 's', index }));
    if (call.request.failCode !== 0)
      call.emit('error', { code: call.request.failCode, details: call.request.failMessage });
    else call.end();
  },
};

/** What a Connect client observes of a unary call and a server stream. */
async function connectObservations(transport: Transport) {
  const client = createClient(EchoService, transport);
  const headers = (h: Headers) => {
    const out: Record<string, unknown> = {};
    h.forEach((v, k) => {
      if (k.startsWith('x-')) out[k] = k.endsWith('-bin') ? [...decodeBinaryHeader(v)] : v;
    });
    return out;
  };
  const outcome = async (run: (opts: object) => Promise<unknown>) => {
    const seen: Record<string, unknown> = {};
    const opts = {
      headers: { 'x-ascii': 'v1' },
      onHeader: (h: Headers) => (seen.header = headers(h)),
      onTrailer: (h: Headers) => (seen.trailer = headers(h)),
    };
    try {
      seen.result = await run(opts);
    } catch (e) {
      assert.ok(e instanceof ConnectError);
      seen.error = {
        code: e.code,
        message: e.rawMessage,
        details: e.findDetails(ErrorDetailSchema).map((d) => [d.reason, d.attempt]),
        metadata: headers(e.metadata),
      };
    }
    return seen;
  };
  const collect = async (req: MessageInitShape<typeof EchoRequestSchema>, opts: object) => {
    const out: unknown[] = [];
    for await (const m of client.serverStream(req, opts)) out.push([m.text, m.index]);
    return out;
  };
  return {
    ok: await outcome(async (opts) => (await client.unary({ text: 'hi' }, opts)).text),
    failed: await outcome(() => client.unary({ failCode: Code.OutOfRange, failMessage: 'too far' }, {})),
    stream: await outcome((opts) => collect({ repeat: 2 }, opts)),
    streamFailed: await outcome((opts) => collect({ repeat: 1, failCode: Code.DataLoss, failMessage: 'lost' }, opts)),
  };
}

describe('a Connect client calling a grpc-js implementation', () => {
  it("through a forward tunnel observes what it observes with Connect's gRPC transport directly", async () => {
    const { server: plain, address: plainAddress } = await startServer((s) => s.addService(definition, grpcJsImpl));
    const sessionManager = new Http2SessionManager(`http://${plainAddress}`);
    const direct = createGrpcTransport({ baseUrl: `http://${plainAddress}`, sessionManager });

    const handler = new TunnelServiceHandler();
    handler.addService(definition, grpcJsImpl);
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    try {
      const expected = await connectObservations(direct);
      assert.deepEqual(await connectObservations(createTunnelTransport(tunnel)), expected);
      assert.deepEqual((expected.failed as { error: { details: unknown } }).error.details, [['because', 3]]);
    } finally {
      sessionManager.abort();
      tunnel.close();
      connection.close();
      await stopServer(server);
      await stopServer(plain);
    }
  });
});
