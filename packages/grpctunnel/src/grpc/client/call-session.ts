// The HTTP/2 session under a grpc-js client call. grpc-js does not expose it,
// so it is reached through grpc-js's call objects, which are not public API:
// every step is checked, and when the shape is not the expected one (another
// grpc-js version, or a connection that is itself a tunnel) the result is
// undefined and callers go without.

/** Layers (interceptors, resolving, retrying, load-balancing calls) tolerated on the way. */
const MAX_LAYERS = 64;

type Layer = {
  http2Stream?: { session?: unknown };
  nextCall?: unknown;
  child?: unknown;
  underlyingCalls?: unknown;
  committedCallIndex?: unknown;
  call?: unknown;
};

/** The call one layer further down, if `layer` has one. */
function below(layer: Layer): unknown {
  // InterceptingCall.nextCall, ResolvingCall/LoadBalancingCall.child,
  // RetryingCall.underlyingCalls[committed].call, BaseInterceptingCall.call
  if (layer.nextCall !== undefined) return layer.nextCall;
  if (layer.child !== undefined) return layer.child;
  const attempts = layer.underlyingCalls;
  if (Array.isArray(attempts)) {
    const index = typeof layer.committedCallIndex === 'number' ? layer.committedCallIndex : attempts.length - 1;
    return (attempts[index] as { call?: unknown } | undefined)?.call;
  }
  return layer.call;
}

/**
 * The `session` of the HTTP/2 stream under a grpc-js client call object
 * (ClientDuplexStream and the like) that has received its response headers,
 * unchecked: callers test the shape they need.
 */
export function clientSessionOf(call: object): unknown {
  // A tunnel RPC on the library's own connection (RawTunnelCall) says it directly.
  const own = (call as { http2Session?: unknown }).http2Session;
  if (typeof own === 'function') return own.call(call);
  // ClientDuplexStream.call -> (InterceptingCall.nextCall)* -> BaseInterceptingCall.call
  //   -> ResolvingCall.child -> RetryingCall.underlyingCalls[i].call -> LoadBalancingCall.child
  //   -> Http2SubchannelCall.http2Stream.session
  let layer = (call as { call?: unknown }).call;
  for (let depth = 0; depth < MAX_LAYERS && typeof layer === 'object' && layer !== null; depth++) {
    const stream = (layer as Layer).http2Stream;
    if (typeof stream === 'object' && stream !== null) return stream.session;
    layer = below(layer as Layer);
  }
  return undefined;
}
