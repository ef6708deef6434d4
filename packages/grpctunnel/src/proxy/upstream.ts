// What both proxies (the agent's handler and the gateway's any-method
// endpoint) do with the call they open upstream: raw bytes, one-hop headers
// left behind, back-pressure in both directions, and the final status passed
// on only after the last message.
import { type ClientDuplexStream, status as Status, type StatusObject } from '@grpc/grpc-js';

/** Serializer and deserializer of raw message bytes. */
export const rawBytes = (b: Buffer): Buffer => b;

interface Writable {
  write(message: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/** Writes `message` to `to`; when `to` is full, pauses `from` until it drains. */
export function relay(message: Buffer, to: Writable, from: Pausable): void {
  if (!to.write(message)) {
    from.pause();
    to.once('drain', () => from.resume());
  }
}

/**
 * Calls `finish` once with the upstream call's status. grpc-js reports the
 * status as soon as it arrives, while messages may still wait in the
 * stream's buffer (paused for back-pressure), so OK is reported only after
 * the last message was read; a failure at once.
 */
export function onFinalStatus(
  upstream: ClientDuplexStream<Buffer, Buffer>,
  finish: (status: StatusObject) => void,
): void {
  let ended = false;
  let ok: StatusObject | undefined;
  upstream.on('error', () => {});
  upstream.on('end', () => {
    ended = true;
    if (ok) finish(ok);
  });
  upstream.on('status', (status: StatusObject) => {
    if (status.code !== Status.OK || ended) finish(status);
    else ok = status;
  });
}
