// The data-frame fast path must write exactly what the generated encoder
// writes, for every stream id, size and chunk length it may meet.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import {
  decodeClientToServer,
  decodeServerToClient,
  encodeClientToServer,
  encodeServerToClient,
  frameClientToServer,
  frameServerToClient,
} from '#grpctunnel/grpc/tunnel-service.js';
import { frameMessage } from '#grpctunnel/grpc/wire.js';

const ids = [0, 1, 2, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER];
const sizes = [0, 1, 127, 128, 16_384, 4 * 1024 * 1024, 2 ** 32 - 1];
const chunkLengths = [0, 1, 127, 128, 16_383, 16_384, 70_000];

const chunk = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff);
const generated = {
  c2s: (f: ClientToServer) => Buffer.from(ClientToServer.encode(f).finish()),
  s2c: (f: ServerToClient) => Buffer.from(ServerToClient.encode(f).finish()),
};

describe('data frame encoding', () => {
  it('matches the generated encoder byte for byte, both directions, both frame kinds', () => {
    let cases = 0;
    for (const streamId of ids) {
      for (const n of chunkLengths) {
        const data = chunk(n);
        const more: ClientToServer = { streamId, frame: { $case: 'moreRequestData', value: data } };
        assert.deepEqual(encodeClientToServer(more), generated.c2s(more), `more_request_data id ${streamId} n ${n}`);
        const moreOut: ServerToClient = { streamId, frame: { $case: 'moreResponseData', value: data } };
        assert.deepEqual(encodeServerToClient(moreOut), generated.s2c(moreOut), `more_response_data ${streamId}/${n}`);
        for (const size of sizes) {
          const start: ClientToServer = { streamId, frame: { $case: 'requestMessage', value: { size, data } } };
          assert.deepEqual(
            encodeClientToServer(start),
            generated.c2s(start),
            `request_message ${streamId}/${size}/${n}`,
          );
          const startOut: ServerToClient = { streamId, frame: { $case: 'responseMessage', value: { size, data } } };
          assert.deepEqual(
            encodeServerToClient(startOut),
            generated.s2c(startOut),
            `response_message ${streamId}/${size}/${n}`,
          );
          cases += 2;
        }
        cases += 2;
      }
    }
    assert.equal(cases, ids.length * chunkLengths.length * (2 + 2 * sizes.length));
  });

  it('writes the same frames behind a gRPC message prefix for the own HTTP/2 paths, data or not', () => {
    const data = chunk(16_352);
    const c2s: ClientToServer[] = [
      { streamId: 1, frame: { $case: 'requestMessage', value: { size: 40_000, data } } },
      { streamId: 2 ** 40, frame: { $case: 'moreRequestData', value: data } },
      { streamId: 0, frame: { $case: 'moreRequestData', value: chunk(0) } },
      { streamId: 3, frame: { $case: 'halfClose', value: {} } },
      { streamId: 4, frame: { $case: 'windowUpdate', value: 65_535 } },
    ];
    for (const f of c2s) {
      const framed = frameClientToServer(f);
      assert.deepEqual(framed, frameMessage(generated.c2s(f)), `${f.frame?.$case} ${f.streamId}`);
      assert.equal(framed.readUInt32BE(1), framed.length - 5);
    }
    const s2c: ServerToClient[] = [
      { streamId: 5, frame: { $case: 'responseMessage', value: { size: 1, data: chunk(1) } } },
      { streamId: 127, frame: { $case: 'moreResponseData', value: data } },
      { streamId: 6, frame: { $case: 'closeStream', value: { responseTrailers: undefined, status: undefined } } },
    ];
    for (const f of s2c) {
      assert.deepEqual(frameServerToClient(f), frameMessage(generated.s2c(f)), `${f.frame?.$case} ${f.streamId}`);
    }
  });

  it('round-trips through the decoders', () => {
    const data = chunk(16_384);
    const c2s = decodeClientToServer(
      encodeClientToServer({ streamId: 9, frame: { $case: 'requestMessage', value: { size: 100_000, data } } }),
    );
    assert.equal(c2s.streamId, 9);
    assert.equal(c2s.frame?.$case, 'requestMessage');
    if (c2s.frame?.$case === 'requestMessage') {
      assert.equal(c2s.frame.value.size, 100_000);
      assert.deepEqual(Buffer.from(c2s.frame.value.data), Buffer.from(data));
    }
    const s2c = decodeServerToClient(
      encodeServerToClient({ streamId: 3, frame: { $case: 'moreResponseData', value: data } }),
    );
    assert.equal(s2c.frame?.$case, 'moreResponseData');
    if (s2c.frame?.$case === 'moreResponseData') assert.deepEqual(Buffer.from(s2c.frame.value), Buffer.from(data));
  });

  it('leaves negative stream ids (Settings) to the generated encoder', () => {
    const settings: ServerToClient = {
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    };
    assert.equal(encodeServerToClient(settings).toString('hex'), '08ffffffffffffffffff0132080a02000110808004');
    const odd: ServerToClient = { streamId: -5, frame: { $case: 'moreResponseData', value: chunk(3) } };
    assert.deepEqual(encodeServerToClient(odd), generated.s2c(odd));
  });
});
