/** A grpc-js stream as the tunnel writes to it: each write completes through its callback. */
export interface FrameSink<F> {
  write(frame: F, callback: () => void): boolean;
}

/** Frames in flight on the tunnel RPC before the scheduler holds the rest back. Measured: see BENCHMARKS.md. */
export const DEFAULT_FRAMES_IN_FLIGHT = 4;

/**
 * Limits how many frames sit in grpc-js's buffers at once. grpc-js accepts
 * 16 messages before its stream reports back-pressure; a frame queued there
 * waits behind all of them whatever stream it belongs to. Holding the rest
 * in the engine's round-robin scheduler instead keeps a small call from
 * waiting behind a bulk transfer's chunks.
 */
export function gateWrites<F>(sink: FrameSink<F>, drained: () => void, limit = DEFAULT_FRAMES_IN_FLIGHT) {
  let inFlight = 0;
  let blocked = false;
  const done = () => {
    inFlight--;
    if (blocked && inFlight < limit) {
      blocked = false;
      drained();
    }
  };
  return (frame: F): boolean => {
    inFlight++;
    const accepted = sink.write(frame, done);
    if (!accepted || inFlight >= limit) blocked = true;
    return !blocked;
  };
}
