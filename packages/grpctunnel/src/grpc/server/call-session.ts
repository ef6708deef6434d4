// The HTTP/2 session under a grpc-js server call. grpc-js does not expose it,
// so it is reached through grpc-js's call objects, which are not public API:
// every step is checked, and when the shape is not the expected one (another
// grpc-js version) the result is undefined and callers go without.

/** Layers of server interceptors tolerated between the call and the stream. */
const MAX_LAYERS = 64;

/**
 * The `session` of the HTTP/2 stream under a grpc-js server call object
 * (ServerDuplexStream and the like), unchecked: callers test the shape they
 * need. Undefined when the call objects do not lead there.
 */
export function serverSessionOf(call: object): unknown {
  // A tunnel RPC on the library's own HTTP/2 handling (RawAcceptedCall) says it directly.
  const own = (call as { http2Session?: unknown }).http2Session;
  if (typeof own === 'function') return own.call(call);
  // ServerDuplexStream.call -> (ServerInterceptingCall.nextCall)* -> BaseServerInterceptingCall.stream.session
  let layer = (call as { call?: unknown }).call;
  for (let depth = 0; depth < MAX_LAYERS && typeof layer === 'object' && layer !== null; depth++) {
    const stream = (layer as { stream?: { session?: unknown } }).stream;
    if (typeof stream === 'object' && stream !== null) return stream.session;
    layer = (layer as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}
