// Reads test/fixtures/go-transcript.jsonl: frames recorded from the Go
// reference, as protobuf JSON with proto field names, turned into our frame
// objects. The recording lives inside the repository so a fresh clone can run
// `npm test` (test/self-contained.test.ts keeps it that way).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ClientToServer, Metadata, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';

/** One line of the transcript. */
export interface TranscriptLine {
  scenario: string;
  dir?: 'to_server' | 'to_client';
  by?: 'go' | 'script';
  frame?: Record<string, unknown>;
  hex?: string;
  note?: string;
  [key: string]: unknown;
}

/** The recorded Go frames, a fixture in the repository (this file runs from dist/test/helpers/). */
export const TRANSCRIPT_PATH = fileURLToPath(new URL('../../../test/fixtures/go-transcript.jsonl', import.meta.url));

export function loadTranscript(path = TRANSCRIPT_PATH): TranscriptLine[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TranscriptLine);
}

type Json = Record<string, any>;

const REVISIONS: Record<string, number> = { REVISION_ZERO: 0, REVISION_ONE: 1 };
const revision = (v: unknown) => (typeof v === 'number' ? v : (REVISIONS[String(v)] ?? Number.NaN));
const bytes = (b64: unknown) => Buffer.from(String(b64 ?? ''), 'base64');

/** Metadata values are strings in the Go schema (raw bytes for -bin keys); ours are bytes. */
function metadata(json: Json | undefined): Metadata {
  const md: Metadata['md'] = {};
  for (const [key, values] of Object.entries((json?.md ?? {}) as Record<string, { val?: string[] }>)) {
    md[key] = { val: (values.val ?? []).map((v) => Buffer.from(v, 'latin1')) };
  }
  return { md };
}

function messageData(json: Json): { size: number; data: Uint8Array } {
  return { size: Number(json.size ?? 0), data: bytes(json.data) };
}

/** A `ClientToServer` frame from its protobuf JSON. */
export function clientFrame(json: Json): ClientToServer {
  const streamId = Number(json.stream_id ?? 0);
  if (json.new_stream) {
    const ns = json.new_stream as Json;
    return {
      streamId,
      frame: {
        $case: 'newStream',
        value: {
          methodName: String(ns.method_name ?? ''),
          requestHeaders: metadata(ns.request_headers),
          initialWindowSize: Number(ns.initial_window_size ?? 0),
          protocolRevision: revision(ns.protocol_revision ?? 0),
        },
      },
    };
  }
  if (json.request_message)
    return { streamId, frame: { $case: 'requestMessage', value: messageData(json.request_message) } };
  if ('more_request_data' in json)
    return { streamId, frame: { $case: 'moreRequestData', value: bytes(json.more_request_data) } };
  if (json.half_close) return { streamId, frame: { $case: 'halfClose', value: {} } };
  if (json.cancel) return { streamId, frame: { $case: 'cancel', value: {} } };
  if ('window_update' in json) return { streamId, frame: { $case: 'windowUpdate', value: Number(json.window_update) } };
  throw new Error(`unknown ClientToServer frame ${JSON.stringify(json)}`);
}

/** A `ServerToClient` frame from its protobuf JSON. */
export function serverFrame(json: Json): ServerToClient {
  const streamId = Number(json.stream_id ?? 0);
  if (json.settings) {
    const s = json.settings as Json;
    return {
      streamId,
      frame: {
        $case: 'settings',
        value: {
          supportedProtocolRevisions: ((s.supported_protocol_revisions ?? []) as unknown[]).map(revision),
          initialWindowSize: Number(s.initial_window_size ?? 0),
        },
      },
    };
  }
  if (json.response_headers)
    return { streamId, frame: { $case: 'responseHeaders', value: metadata(json.response_headers) } };
  if (json.response_message)
    return { streamId, frame: { $case: 'responseMessage', value: messageData(json.response_message) } };
  if ('more_response_data' in json) {
    return { streamId, frame: { $case: 'moreResponseData', value: bytes(json.more_response_data) } };
  }
  if (json.close_stream) {
    const c = json.close_stream as Json;
    const st = c.status as Json | undefined;
    return {
      streamId,
      frame: {
        $case: 'closeStream',
        value: {
          responseTrailers: c.response_trailers ? metadata(c.response_trailers) : undefined,
          status: st ? { code: Number(st.code ?? 0), message: String(st.message ?? ''), details: [] } : undefined,
        },
      },
    };
  }
  if ('window_update' in json) return { streamId, frame: { $case: 'windowUpdate', value: Number(json.window_update) } };
  throw new Error(`unknown ServerToClient frame ${JSON.stringify(json)}`);
}
