import {
  type Deadline,
  experimental,
  logVerbosity,
  type Metadata,
  type ServerInterceptingCallInterface,
  status as Status,
} from '@grpc/grpc-js';
import { decodeTimeout } from '../../engine/deadline.js';
import { localStatus } from '../../engine/status.js';
import type { ServerStreamHandlers, TunnelServerStream } from '../../engine/tunnel-server.js';
import { type LongTimer, setLongTimeout } from '../long-timer.js';
import { fromWireMetadata, toWireMetadata, wireHeader } from '../metadata.js';
import { peerFaults } from '../peer-faults.js';
import { type OutgoingStatus, toStreamStatus } from '../status.js';
import { type AuthContext, type ConnectionInfo, connectionInfoFromPeer, type TunnelInfo } from '../tunnel-info.js';
import type { RegisteredMethod } from './service-registry.js';

type MetricsRecorder = ReturnType<ServerInterceptingCallInterface['getMetricsRecorder']>;
type InterceptingServerListener = Parameters<ServerInterceptingCallInterface['start']>[0];

/**
 * One tunneled call on the server side, presented as grpc-js's
 * `ServerInterceptingCallInterface`: the same seam grpc-js puts under an
 * HTTP/2 stream, so users' server interceptors wrap it unchanged.
 */
export class TunnelServerCall implements ServerInterceptingCallInterface {
  private listener: InterceptingServerListener | undefined;
  private cancelled = false;
  private ended = false;
  /** What the stream reports to this call; the engine installs it before the handler runs. */
  readonly handlers: ServerStreamHandlers;
  private timer: LongTimer | undefined;
  private readonly deadline: Deadline = Number.POSITIVE_INFINITY;
  private readonly metadata: Metadata;

  constructor(
    private readonly stream: TunnelServerStream,
    private readonly method: RegisteredMethod,
    /** The tunnel that carries this call. */
    readonly tunnel: TunnelInfo,
    /** The tunnel's auth context, tagged so that getTunnelInfo() finds the tunnel. */
    private readonly authContext: AuthContext,
    private readonly metricsRecorder: () => MetricsRecorder,
  ) {
    this.metadata = fromWireMetadata(stream.headers);
    const timeout = wireHeader(stream.headers, 'grpc-timeout');
    const ms = timeout === undefined ? undefined : decodeTimeout(timeout);
    if (ms !== undefined) {
      // grpc-timeout reaches 99,999,999 hours, far past one Node timer's
      // range; setLongTimeout keeps such a deadline instead of firing at once.
      this.deadline = new Date(Date.now() + ms);
      this.timer = setLongTimeout(() => this.expire(), ms);
    }
    this.handlers = {
      onMessage: (buf) => this.receive(buf),
      onHalfClose: () => this.listener?.onReceiveHalfClose(),
      onCancel: () => this.notifyCancelled(),
    };
  }

  start(listener: InterceptingServerListener): void {
    this.listener = listener;
    if (this.cancelled) {
      listener.onCancel();
      return;
    }
    listener.onReceiveMetadata(this.metadata);
  }

  sendMetadata(metadata: Metadata): void {
    if (!this.ended) this.stream.sendHeaders(toWireMetadata(metadata));
  }

  sendMessage(message: unknown, callback: () => void): void {
    // As grpc-js does: on a call that ended, writes never complete (the call
    // object is destroyed), which keeps a writing loop from spinning.
    if (this.ended) return;
    let bytes: Buffer;
    try {
      bytes = this.method.serialize(message);
    } catch (err) {
      experimental.log(logVerbosity.ERROR, `grpctunnel: failed to serialize a response of ${this.method.path}: ${err}`);
      this.sendStatus({ code: Status.INTERNAL, details: 'Error serializing response' });
      callback();
      return;
    }
    this.stream.sendMessage(bytes, (error) => {
      if (!error) callback();
    });
  }

  sendStatus(status: OutgoingStatus): void {
    if (this.ended) return;
    this.ended = true;
    this.clearTimer();
    this.stream.close(toStreamStatus(status));
  }

  startRead(): void {
    this.stream.requestRead();
  }

  getPeer(): string {
    return this.tunnel.peer;
  }

  getDeadline(): Deadline {
    return this.deadline;
  }

  getHost(): string {
    return this.tunnel.host;
  }

  getAuthContext(): AuthContext {
    return this.authContext;
  }

  getConnectionInfo(): ConnectionInfo {
    return connectionInfoFromPeer(this.tunnel.peer);
  }

  getMetricsRecorder(): MetricsRecorder {
    return this.metricsRecorder();
  }

  private receive(buf: Buffer): void {
    let message: unknown;
    try {
      message = this.method.deserialize(buf);
    } catch (err) {
      peerFaults.log(`failed to parse a request of ${this.method.path} from ${this.tunnel.peer}: ${err}`);
      this.sendStatus({ code: Status.INTERNAL, details: 'Error deserializing request' });
      this.notifyCancelled();
      return;
    }
    this.listener?.onReceiveMessage(message);
  }

  private expire(): void {
    this.timer = undefined;
    if (this.ended) return;
    this.ended = true;
    this.stream.close(localStatus(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
    this.notifyCancelled();
  }

  private notifyCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.ended = true;
    this.clearTimer();
    this.listener?.onCancel();
  }

  private clearTimer(): void {
    this.timer?.clear();
    this.timer = undefined;
  }
}
