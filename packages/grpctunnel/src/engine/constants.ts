/** Largest payload of one message chunk on the wire. */
export const MAX_CHUNK_SIZE = 16384;
/**
 * Largest chunk the large-chunk extension lets two peers of this library
 * agree on: 4 MiB (grpc-js's and grpc-go's default limit on a received
 * message) less room for the frame's own fields.
 */
export const MAX_EXTENDED_CHUNK_SIZE = 4 * 1024 * 1024 - 4096;
/**
 * Default largest chunk between two peers of this library (see
 * chunk-size negotiation in negotiation.ts): a message up to 1 MiB crosses
 * as one frame, where 16 KiB chunks make 64 of them.
 */
export const DEFAULT_EXTENDED_CHUNK_SIZE = 1024 * 1024;
/** Tunnel RPC header (request and response) in which a peer of this library advertises the largest chunk it accepts. */
export const CHUNK_SIZE_HEADER = 'grpctunnel-max-chunk-size';
/** Flow-control window each direction of a stream starts with (revision one). */
export const DEFAULT_WINDOW_SIZE = 65536;
/** Stream id that carries tunnel-wide frames (Settings). */
export const TUNNEL_STREAM_ID = -1;
/** Request and response header that advertises revision negotiation. */
export const NEGOTIATE_HEADER = 'grpctunnel-negotiate';
/** The only value of {@link NEGOTIATE_HEADER} that counts as "on". */
export const NEGOTIATE_ON = 'on';
/** grpc-js's default limit on received message size (4 MiB). */
export const DEFAULT_MAX_RECEIVE_MESSAGE_SIZE = 4 * 1024 * 1024;
