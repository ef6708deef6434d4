// Hand-driven tunnel peers for protocol tests: frames are built and read
// one by one on a plain OpenTunnel stream, with no engine in between.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import {
  Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServerDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '#grpctunnel/engine/frames.js';
import type { StreamId } from '#grpctunnel/engine/stream-id.js';
import type { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import {
  decodeClientToServer,
  decodeServerToClient,
  encodeClientToServer,
  encodeServerToClient,
  OPEN_TUNNEL_PATH,
} from '#grpctunnel/grpc/tunnel-service.js';

/** A queue of received frames that tests await one at a time. */
export class FrameQueue<F> {
  private readonly frames: F[] = [];
  private waiters: Array<(f: F | undefined) => void> = [];
  private ended = false;

  push(frame: F): void {
    const w = this.waiters.shift();
    if (w) w(frame);
    else this.frames.push(frame);
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiters) w(undefined);
    this.waiters = [];
  }

  /** The next frame, or undefined once the stream ended; fails after `ms`. */
  next(ms = 2000): Promise<F | undefined> {
    const f = this.frames.shift();
    if (f !== undefined) return Promise.resolve(f);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('timed out waiting for a frame'));
      }, ms);
      const waiter = (frame: F | undefined) => {
        clearTimeout(timer);
        resolve(frame);
      };
      this.waiters.push(waiter);
    });
  }

  /** Frames until one matches `pred` (that one included). */
  async until(pred: (f: F) => boolean, ms = 2000): Promise<F[]> {
    const seen: F[] = [];
    for (;;) {
      const f = await this.next(ms);
      if (f === undefined) throw new Error(`stream ended before the expected frame; saw ${JSON.stringify(seen)}`);
      seen.push(f);
      if (pred(f)) return seen;
    }
  }

  /** Frames received and not yet taken. */
  drain(): F[] {
    return this.frames.splice(0);
  }
}

/**
 * A raw tunnel client on a plain OpenTunnel RPC. Received frames are typed
 * `S`: the generated type by default; a test whose peer uses stream ids past
 * 2^53 (which arrive as bigints) opens it with {@link rawClient64}.
 */
export interface RawClient<S extends ServerFrame = ServerToClient> {
  send(frame: ClientFrame): void;
  frames: FrameQueue<S>;
  headers: Promise<Metadata>;
  status: Promise<StatusObject>;
  close(): void;
}

export function rawClient(address: string, negotiate = true, headers: Record<string, string> = {}): RawClient {
  return openRawClient<ServerToClient>(address, negotiate, headers);
}

/** A raw tunnel client whose received frames may carry stream ids past 2^53 (as bigints). */
export function rawClient64(address: string, negotiate = true): RawClient<ServerFrame> {
  return openRawClient<ServerFrame>(address, negotiate);
}

function openRawClient<S extends ServerFrame>(
  address: string,
  negotiate: boolean,
  extraHeaders: Record<string, string> = {},
): RawClient<S> {
  const client = new Client(address, credentials.createInsecure());
  const md = new Metadata();
  if (negotiate) md.set('grpctunnel-negotiate', 'on');
  for (const [key, value] of Object.entries(extraHeaders)) md.set(key, value);
  const call: ClientDuplexStream<ClientFrame, ServerFrame> = client.makeBidiStreamRequest(
    OPEN_TUNNEL_PATH,
    encodeClientToServer,
    decodeServerToClient,
    md,
  );
  const frames = new FrameQueue<S>();
  call.on('data', (f: S) => frames.push(f));
  call.on('error', (_e: ServiceError) => {});
  const status = new Promise<StatusObject>((resolve) =>
    call.on('status', (s: StatusObject) => {
      frames.end();
      resolve(s);
    }),
  );
  const headers = new Promise<Metadata>((resolve) => call.on('metadata', resolve));
  return {
    send: (frame) => call.write(frame),
    frames,
    headers,
    status,
    close() {
      call.cancel();
      client.close();
    },
  };
}

/** A raw tunnel server: the test script answers each OpenTunnel call. */
export interface RawServerTunnel {
  call: ServerDuplexStream<ClientToServer, ServerToClient>;
  frames: FrameQueue<ClientToServer>;
  send(frame: ServerFrame): void;
}

/** A grpc-js service implementation whose OpenTunnel is driven by `onTunnel`. */
export function rawTunnelService(onTunnel: (t: RawServerTunnel) => void) {
  return {
    openTunnel(call: ServerDuplexStream<ClientToServer, ServerToClient>) {
      const frames = new FrameQueue<ClientToServer>();
      call.on('data', (f: ClientToServer) => frames.push(f));
      call.on('end', () => frames.end());
      call.on('error', () => frames.end());
      call.on('cancelled', () => frames.end());
      // The codec writes bigint ids as well; only the generated type says number.
      onTunnel({ call, frames, send: (f) => call.write(f as ServerToClient) });
    },
  };
}

/** A raw-service definition with our codecs (for rawTunnelService). */
export const RawTunnelServiceDefinition = {
  openTunnel: {
    path: OPEN_TUNNEL_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: encodeClientToServer,
    requestDeserialize: decodeClientToServer,
    responseSerialize: encodeServerToClient,
    responseDeserialize: decodeServerToClient,
  },
};

/** Frame builders for readable tests. */
export const c2s = {
  newStream: (
    streamId: StreamId,
    methodName: string,
    rev = 1,
    window = 65536,
    md: Record<string, string> = {},
  ): ClientFrame => ({
    streamId,
    frame: {
      $case: 'newStream',
      value: {
        methodName,
        requestHeaders: { md: Object.fromEntries(Object.entries(md).map(([k, v]) => [k, { val: [Buffer.from(v)] }])) },
        initialWindowSize: window,
        protocolRevision: rev,
      },
    },
  }),
  message: (streamId: StreamId, size: number, data: Uint8Array): ClientFrame => ({
    streamId,
    frame: { $case: 'requestMessage', value: { size, data } },
  }),
  more: (streamId: StreamId, data: Uint8Array): ClientFrame => ({
    streamId,
    frame: { $case: 'moreRequestData', value: data },
  }),
  halfClose: (streamId: StreamId): ClientFrame => ({ streamId, frame: { $case: 'halfClose', value: {} } }),
  cancel: (streamId: StreamId): ClientFrame => ({ streamId, frame: { $case: 'cancel', value: {} } }),
  window: (streamId: StreamId, n: number): ClientFrame => ({ streamId, frame: { $case: 'windowUpdate', value: n } }),
};

/** Sends a complete unary request (one chunk) and half-closes. */
export function sendUnary<S extends ServerFrame>(
  peer: RawClient<S>,
  streamId: StreamId,
  payload: Buffer,
  method = '/test.Echo/Unary',
  rev = 1,
) {
  peer.send(c2s.newStream(streamId, method, rev));
  peer.send(c2s.message(streamId, payload.length, payload));
  peer.send(c2s.halfClose(streamId));
}

/** Waits for a stream's close_stream, returning every frame of that stream seen on the way. */
export async function closeOf<S extends ServerFrame>(peer: RawClient<S>, streamId: StreamId) {
  const frames = await peer.frames.until((f) => f.streamId === streamId && f.frame?.$case === 'closeStream');
  const mine = frames.filter((f) => f.streamId === streamId);
  const last = mine[mine.length - 1]!;
  const close = last.frame?.$case === 'closeStream' ? last.frame.value : undefined;
  return { frames: mine, all: frames, status: close?.status, trailers: close?.responseTrailers };
}

/** A forward-tunnel server written on node:http2 alone (no grpc-js), see {@link rawHttp2TunnelServer}. */
export interface RawHttp2TunnelServer {
  /** host:port it listens on. */
  readonly address: string;
  /** Tunnel RPCs that ended with a status (trailers) after the client half-closed. */
  readonly finished: number;
  /** Tunnel RPCs the client reset (the stream closed with an RST_STREAM error code). */
  readonly reset: number;
  /** Times a client connection's session was closed by an error (such as nghttp2's GOAWAY). */
  readonly sessionErrors: number;
  close(): Promise<void>;
}

/** Splits gRPC length-prefixed messages out of a byte stream. */
function grpcMessages(onMessage: (message: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      onMessage(pending.subarray(5, 5 + length));
      pending = pending.subarray(5 + length);
    }
  };
}

function grpcMessage(body: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/**
 * A tunnel server on a bare node:http2 server: it speaks gRPC framing and the
 * tunnel protocol by hand (revision one Settings, then unary echo on any
 * method) and finishes each tunnel RPC with `grpc-status: 0` trailers once
 * the client half-closes. It sees the same nghttp2 limits grpc-js's server
 * does, without any grpc-js behaviour in between.
 */
export async function rawHttp2TunnelServer(): Promise<RawHttp2TunnelServer> {
  const counts = { finished: 0, reset: 0, sessionErrors: 0 };
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => counts.sessionErrors++);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.on('close', () => {
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) counts.reset++;
    });
    if (headers[':path'] !== OPEN_TUNNEL_PATH) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
      return;
    }
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpctunnel-negotiate': 'on' },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    const send = (frame: ServerFrame) => {
      if (!stream.writableEnded) stream.write(grpcMessage(encodeServerToClient(frame)));
    };
    if (headers['grpctunnel-negotiate'] === 'on') {
      send({
        streamId: -1,
        frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
      });
    }
    const requests = new Map<StreamId, Buffer[]>();
    stream.on(
      'data',
      grpcMessages((message) => {
        const { streamId, frame } = decodeClientToServer(message);
        switch (frame?.$case) {
          case 'newStream':
            requests.set(streamId, []);
            break;
          case 'requestMessage':
            requests.get(streamId)?.push(Buffer.from(frame.value.data));
            break;
          case 'moreRequestData':
            requests.get(streamId)?.push(Buffer.from(frame.value));
            break;
          case 'cancel':
            requests.delete(streamId);
            break;
          case 'halfClose': {
            const data = Buffer.concat(requests.get(streamId) ?? []);
            requests.delete(streamId);
            send({ streamId, frame: { $case: 'responseHeaders', value: { md: {} } } });
            send({ streamId, frame: { $case: 'responseMessage', value: { size: data.length, data } } });
            send({
              streamId,
              frame: { $case: 'closeStream', value: { responseTrailers: { md: {} }, status: undefined } },
            });
            break;
          }
        }
      }),
    );
    stream.on('end', () => {
      counts.finished++;
      stream.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    get finished() {
      return counts.finished;
    },
    get reset() {
      return counts.reset;
    },
    get sessionErrors() {
      return counts.sessionErrors;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}
