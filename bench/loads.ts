// The work each scenario does against a client, for a fixed duration (or a
// fixed amount, for fairness), and what it measures.
import type { ServiceError } from '@grpc/grpc-js';
import type { AnyClient } from './clients.js';

/** What one scenario measured on one transport (fields that do not apply are absent). */
export interface Measured {
  qps?: number;
  p50_ms?: number;
  p99_ms?: number;
  mbps?: number;
  /** Fairness scenario: the slowest stream's completion time and the median's. */
  slowest_ms?: number;
  median_ms?: number;
  /** Operations completed (calls, round trips), for CPU per operation. */
  ops?: number;
  /** CPU time of the calling process (this one) and of the service process during the measurement, in µs per op. */
  cpu_caller_us_per_op?: number;
  cpu_service_us_per_op?: number;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Unary calls with `concurrency` callers for `seconds`: QPS and latency percentiles. */
export async function unaryLoad(
  client: AnyClient,
  seconds: number,
  concurrency: number,
  payload: Buffer,
): Promise<Measured> {
  const latencies: number[] = [];
  const end = Date.now() + seconds * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      const t0 = now();
      await new Promise<void>((resolve, reject) =>
        client.unary(payload, (err: ServiceError | null) => (err ? reject(err) : resolve())),
      );
      latencies.push(now() - t0);
    }
  };
  const start = now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    qps: latencies.length / elapsed,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
    mbps: (latencies.length * payload.length * 2) / elapsed / 1e6,
    ops: latencies.length,
  };
}

/** Server streaming of `size`-byte messages for `seconds`: MB/s received. */
export async function streamLoad(client: AnyClient, seconds: number, size: number): Promise<Measured> {
  const request = Buffer.alloc(4);
  request.writeUInt32BE(size, 0);
  const call = client.stream(request);
  let bytes = 0;
  let started = 0;
  call.on('error', () => {});
  await new Promise<void>((resolve) => {
    call.on('data', (m: Buffer) => {
      if (started === 0) started = now();
      bytes += m.length;
      if (now() - started >= seconds * 1000) {
        call.cancel();
        resolve();
      }
    });
  });
  return { mbps: bytes / ((now() - started) / 1000) / 1e6 };
}

/** One bidi stream, one `size`-byte message in flight at a time, for `seconds`: round-trip percentiles. */
export async function pingPongLoad(client: AnyClient, seconds: number, size: number): Promise<Measured> {
  const call = client.pingPong();
  const message = Buffer.alloc(size, 7);
  const latencies: number[] = [];
  const end = Date.now() + seconds * 1000;
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    call.on('error', reject);
    call.on('data', () => {
      latencies.push(now() - sent);
      if (Date.now() >= end) {
        call.end();
        resolve();
        return;
      }
      sent = now();
      call.write(message);
    });
    sent = now();
    call.write(message);
  });
  latencies.sort((a, b) => a - b);
  const elapsed = latencies.reduce((a, b) => a + b, 0) / 1000;
  return {
    qps: latencies.length / elapsed,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
    ops: latencies.length,
  };
}

/**
 * `streams` concurrent client streams, each uploading `messages` x `size`
 * bytes: total MB/s, and each stream's completion time (fairness: the
 * slowest against the median).
 */
export async function fanInLoad(client: AnyClient, streams: number, messages: number, size: number): Promise<Measured> {
  const message = Buffer.alloc(size, 3);
  const start = now();
  const finished: number[] = [];
  await Promise.all(
    Array.from(
      { length: streams },
      () =>
        new Promise<void>((resolve, reject) => {
          const call = client.upload((err: ServiceError | null) => {
            if (err) reject(err);
            else {
              finished.push(now() - start);
              resolve();
            }
          });
          let i = 0;
          const pump = () => {
            while (i < messages) {
              i++;
              if (!call.write(message)) {
                call.once('drain', pump);
                return;
              }
            }
            call.end();
          };
          pump();
        }),
    ),
  );
  const elapsed = (now() - start) / 1000;
  finished.sort((a, b) => a - b);
  return {
    mbps: (streams * messages * size) / elapsed / 1e6,
    slowest_ms: finished[finished.length - 1] ?? 0,
    median_ms: percentile(finished, 0.5),
  };
}
