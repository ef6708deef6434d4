import { Code } from '../engine/codes.js';
import { TUNNEL_STREAM_ID } from '../engine/constants.js';
import type { ServerFrame } from '../engine/frames.js';

/**
 * The drain handshake of reverse tunnels, an extension that only peers of
 * this project speak; a Go peer never sees any of it.
 *
 * The protocol has no GOAWAY: a draining tunnel server can only refuse new
 * streams, which the network server learns one refused call at a time, or
 * end the tunnel, after which it can answer nothing, so a call already on
 * the wire toward it is lost. The handshake closes that gap:
 *
 * 1. The network server (the tunnel client of a reverse tunnel) answers
 *    `OpenReverseTunnel` with the response header {@link DRAIN_HEADER}`: on`:
 *    "tell me when you drain, and I will end the tunnel once it is idle".
 * 2. A draining tunnel server that saw that header sends one
 *    {@link drainNotice} frame and goes on serving every stream that
 *    arrives, since the network server may have sent them before it read
 *    the notice.
 * 3. On the notice the network server takes the tunnel out of its pools at
 *    once, lets its calls finish and then ends the tunnel RPC with OK; that
 *    ending is the tunnel server's cue that nothing more can arrive.
 *
 * Without the header (a Go network server) the tunnel server falls back to
 * the protocol's own rule: refuse new streams with UNAVAILABLE, end the
 * tunnel once idle.
 */
export const DRAIN_HEADER = 'grpctunnel-drain';

/** The only value of {@link DRAIN_HEADER} that counts as "on". */
export const DRAIN_ON = 'on';

const DRAIN_MESSAGE = 'the server is shutting down';

/**
 * The notice itself: a close_stream on the tunnel-wide stream id, worded as
 * a refusal of every later stream. Sent only to peers that advertised
 * {@link DRAIN_HEADER}, since other clients treat a frame for stream -1
 * other than Settings as a protocol violation.
 */
export function drainNotice(): ServerFrame {
  return {
    streamId: TUNNEL_STREAM_ID,
    frame: {
      $case: 'closeStream',
      value: { responseTrailers: undefined, status: { code: Code.UNAVAILABLE, message: DRAIN_MESSAGE, details: [] } },
    },
  };
}

/** Whether a frame from a tunnel server is the {@link drainNotice}. */
export function isDrainNotice(frame: ServerFrame): boolean {
  return frame.streamId === TUNNEL_STREAM_ID && frame.frame?.$case === 'closeStream';
}
