// tunneltestsvr's -own-server mode: the tunnel service on a node:http2
// server through the handler's public handleHttp2Stream, with
// TunnelTestService/TriggerTestRPCs on the same port. That one unary is
// answered here by hand, as a user serving a small non-tunnel method beside
// the tunnel service on their own HTTP/2 server would: the library has no
// public server for arbitrary gRPC methods on node:http2 (grpc-js's Server is
// that), so this is the least a program outside the library needs.
import { createServer, constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { MethodDefinition, ServerUnaryCall, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { Metadata, status as Status } from '@grpc/grpc-js';
import type { TunnelServiceHandler } from 'grpctunnel';

/** A unary method to answer beside the tunnel service: its definition and a grpc-js-style implementation. */
export interface UnaryMethod<Req, Res> {
  definition: MethodDefinition<Req, Res>;
  implementation: (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;
}

/** The node:http2 server, with grpc-js-like shutdowns. */
export interface OwnServer {
  listen(port: number, onListening: (port: number) => void, onError: (err: Error) => void): void;
  /** Lets running RPCs finish (each session closes once its streams have), then resolves. */
  tryShutdown(): Promise<void>;
  /** Destroys every session. */
  forceShutdown(): void;
}

/** Serves `handler`'s tunnel service and `unary` on one node:http2 server (plaintext). */
export function ownServer<Req, Res>(handler: TunnelServiceHandler, unary: UnaryMethod<Req, Res>): OwnServer {
  const server = createServer();
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    if (handler.handleHttp2Stream(stream, headers)) return;
    stream.on('error', () => {});
    const type = headers['content-type'];
    if (typeof type !== 'string' || !type.startsWith('application/grpc')) {
      stream.respond({ [h2.HTTP2_HEADER_STATUS]: h2.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
    } else if (headers[':path'] === unary.definition.path) {
      answerUnary(stream, unary);
    } else {
      finish(stream, Status.UNIMPLEMENTED, `The server does not implement the method ${headers[':path']}`);
    }
  });
  return {
    listen: (port, onListening, onError) => {
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => onListening((server.address() as AddressInfo).port));
    },
    tryShutdown: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.close();
        server.close(() => resolve());
      }),
    forceShutdown: () => {
      for (const session of sessions) session.destroy();
    },
  };
}

/** Reads the one request message, runs the implementation, answers with its response or error. */
function answerUnary<Req, Res>(stream: ServerHttp2Stream, unary: UnaryMethod<Req, Res>): void {
  const parts: Buffer[] = [];
  stream.on('data', (data: Buffer) => parts.push(data));
  stream.on('end', () => {
    const body = Buffer.concat(parts);
    // One uncompressed message: the 5-byte prefix (flag, length), then the message.
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
      finish(stream, Status.INTERNAL, 'expected exactly one uncompressed request message');
      return;
    }
    let request: Req;
    try {
      request = unary.definition.requestDeserialize(body.subarray(5));
    } catch {
      finish(stream, Status.INTERNAL, 'Error deserializing request');
      return;
    }
    const call = { request, metadata: new Metadata(), cancelled: false } as unknown as ServerUnaryCall<Req, Res>;
    unary.implementation(call, (error: Partial<ServiceError> | null, response?: Res | null) => {
      if (error) {
        finish(stream, error.code ?? Status.UNKNOWN, error.details ?? error.message ?? 'Unknown Error');
        return;
      }
      const message = unary.definition.responseSerialize(response as Res);
      const framed = Buffer.alloc(5 + message.length);
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, 5);
      if (stream.closed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': Status.OK, 'grpc-message': 'OK' }));
      stream.end(framed);
    });
  });
}

/** A trailers-only answer with `code` and `details`. */
function finish(stream: ServerHttp2Stream, code: Status, details: string): void {
  if (stream.closed) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': code,
      'grpc-message': encodeURI(details),
    },
    { endStream: true },
  );
}
