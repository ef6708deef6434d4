// Hand-driven tunnel peers for protocol tests: frames are built and read
// one by one on a plain OpenTunnel stream, with no engine in between.
import {
  Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServerDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '../../src/engine/frames.js';
import type { StreamId } from '../../src/engine/stream-id.js';
import type { ClientToServer, ServerToClient } from '../../src/gen/grpctunnel/v1/tunnel.js';
import {
  decodeClientToServer,
  decodeServerToClient,
  encodeClientToServer,
  encodeServerToClient,
  OPEN_TUNNEL_PATH,
} from '../../src/grpc/tunnel-service.js';

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

export function rawClient(address: string, negotiate = true): RawClient {
  return openRawClient<ServerToClient>(address, negotiate);
}

/** A raw tunnel client whose received frames may carry stream ids past 2^53 (as bigints). */
export function rawClient64(address: string, negotiate = true): RawClient<ServerFrame> {
  return openRawClient<ServerFrame>(address, negotiate);
}

function openRawClient<S extends ServerFrame>(address: string, negotiate: boolean): RawClient<S> {
  const client = new Client(address, credentials.createInsecure());
  const md = new Metadata();
  if (negotiate) md.set('grpctunnel-negotiate', 'on');
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
