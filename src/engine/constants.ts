/** Largest payload of one message chunk on the wire. */
export const MAX_CHUNK_SIZE = 16384;
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
