// A hand-played tunnel server (the side that answers tunneled calls), for
// tests of the client side alone: it records what each call asked for and
// answers every call the same way, with no engine and no timers of its own.
import { Client, credentials, Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '#grpctunnel/engine/frames.js';
import {
  decodeClientToServer,
  encodeServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
} from '#grpctunnel/grpc/tunnel-service.js';
import { RawTunnelServiceDefinition } from './raw-peer.js';

/** What the client asked for in one new_stream frame (text header values). */
export interface AnsweredCall {
  method: string;
  headers: Record<string, string>;
}

/** The reply every call gets. */
export const ANSWER = Buffer.from('ok');

/**
 * Plays the tunnel-server role of protocol revision zero (the peer does not
 * negotiate): once a call half-closes it gets empty headers, one message
 * ({@link ANSWER}) and status OK.
 */
export function answerCalls(send: (frame: ServerFrame) => void, calls: AnsweredCall[]) {
  return (frame: ClientFrame): void => {
    const { streamId } = frame;
    const body = frame.frame;
    if (body?.$case === 'newStream') {
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(body.value.requestHeaders?.md ?? {})) {
        headers[key] = Buffer.from(value.val[0] ?? []).toString();
      }
      calls.push({ method: body.value.methodName, headers });
    } else if (body?.$case === 'halfClose') {
      send({ streamId, frame: { $case: 'responseHeaders', value: { md: {} } } });
      send({ streamId, frame: { $case: 'responseMessage', value: { size: ANSWER.length, data: ANSWER } } });
      send({
        streamId,
        frame: {
          $case: 'closeStream',
          value: { status: { code: 0, message: '', details: [] }, responseTrailers: { md: {} } },
        },
      });
    }
  };
}

/** A grpc-js service (definition, implementation) whose OpenTunnel answers every call. */
export function answeringTunnelService(calls: AnsweredCall[]) {
  const implementation = {
    openTunnel(call: ServerDuplexStream<ClientFrame, ServerFrame>) {
      // Headers without grpctunnel-negotiate: the tunnel runs revision zero.
      call.sendMetadata(new Metadata());
      call.on(
        'data',
        answerCalls((f) => call.write(f), calls),
      );
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  };
  return { definition: RawTunnelServiceDefinition, implementation };
}

/** A reverse tunnel dialed into `address` by hand: the network server's pool gets a tunnel whose calls it answers. */
export function answeringReverseTunnel(address: string, calls: AnsweredCall[]): { close(): void } {
  const client = new Client(address, credentials.createInsecure());
  const call = client.makeBidiStreamRequest<ServerFrame, ClientFrame>(
    OPEN_REVERSE_TUNNEL_PATH,
    encodeServerToClient,
    decodeClientToServer,
  );
  call.on(
    'data',
    answerCalls((f) => call.write(f), calls),
  );
  call.on('error', () => {});
  return {
    close() {
      call.cancel();
      client.close();
    },
  };
}
