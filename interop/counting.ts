// Counting interceptors: the programs report how many RPCs they issued or
// served, as the reference programs do.
import { InterceptingCall, type Interceptor, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';

/** A counter and the client interceptor that increments it once per RPC issued. */
export function countingClient(): { count: () => number; interceptor: Interceptor } {
  let n = 0;
  return {
    count: () => n,
    interceptor: (options, next) => {
      n++;
      return new InterceptingCall(next(options));
    },
  };
}

/** A counter and the server interceptor that increments it once per RPC served. */
export function countingServer(): { count: () => number; interceptor: ServerInterceptor } {
  let n = 0;
  return {
    count: () => n,
    interceptor: (_method, call) => {
      n++;
      return new ServerInterceptingCall(call);
    },
  };
}
