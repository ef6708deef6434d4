// The frame codec keeps int64 stream ids exact. protobuf-es (which reads
// int64 as bigint) is the independent reference: frames it writes decode to
// the same id here, and frames written here decode to the same id there.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { nextStreamId, normalizeStreamId, type StreamId } from '#grpctunnel/engine/stream-id.js';
import {
  decodeClientToServer,
  decodeServerToClient,
  encodeClientToServer,
  encodeServerToClient,
} from '#grpctunnel/grpc/tunnel-service.js';
import { ClientToServerSchema, ServerToClientSchema } from '../../bench/gen-es/grpctunnel/v1/tunnel_pb.js';

const IDS: bigint[] = [
  0n,
  1n,
  127n,
  128n,
  2n ** 49n - 1n,
  2n ** 49n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 62n,
  2n ** 63n - 1n,
  -1n,
  -2n,
  -(2n ** 53n) + 1n,
  -(2n ** 53n),
  -(2n ** 53n) - 1n,
  -(2n ** 63n),
];

const chunk = Buffer.from('payload bytes');

describe('exact int64 stream ids in the frame codec', () => {
  it('decodes every id protobuf-es writes, for each frame kind, in normal form', () => {
    for (const id of IDS) {
      const expected = normalizeStreamId(id);
      assert.equal(typeof expected, id >= -(2n ** 53n) + 1n && id <= 2n ** 53n - 1n ? 'number' : 'bigint');
      const frames = [
        create(ClientToServerSchema, { streamId: id, frame: { case: 'moreRequestData', value: chunk } }),
        create(ClientToServerSchema, { streamId: id, frame: { case: 'windowUpdate', value: 5 } }),
        create(ClientToServerSchema, {
          streamId: id,
          frame: { case: 'newStream', value: { methodName: '/a.B/C', initialWindowSize: 7, protocolRevision: 1 } },
        }),
      ];
      for (const f of frames) {
        const ours = decodeClientToServer(Buffer.from(toBinary(ClientToServerSchema, f)));
        assert.equal(ours.streamId, expected, `id ${id} (${f.frame.case})`);
        assert.equal(ours.frame?.$case, f.frame.case);
      }
      const s2c = create(ServerToClientSchema, { streamId: id, frame: { case: 'moreResponseData', value: chunk } });
      const back = decodeServerToClient(Buffer.from(toBinary(ServerToClientSchema, s2c)));
      assert.equal(back.streamId, expected);
      assert.ok(back.frame?.$case === 'moreResponseData');
      assert.deepEqual(Buffer.from(back.frame.value), chunk);
    }
  });

  it('writes every id so that protobuf-es reads it back exactly', () => {
    for (const id of IDS) {
      const streamId = normalizeStreamId(id);
      const data = encodeClientToServer({ streamId, frame: { $case: 'moreRequestData', value: chunk } });
      assert.equal(fromBinary(ClientToServerSchema, data).streamId, id, `data frame, id ${id}`);
      const start = encodeServerToClient({
        streamId,
        frame: { $case: 'responseMessage', value: { size: 100, data: chunk } },
      });
      const parsed = fromBinary(ServerToClientSchema, start);
      assert.equal(parsed.streamId, id, `message start, id ${id}`);
      const update = encodeServerToClient({ streamId, frame: { $case: 'windowUpdate', value: 9 } });
      assert.equal(fromBinary(ServerToClientSchema, update).streamId, id, `window update, id ${id}`);
    }
  });

  it('takes the last stream_id wherever it stands, as protobuf does', () => {
    const frame = Buffer.from(
      toBinary(ClientToServerSchema, create(ClientToServerSchema, { frame: { case: 'windowUpdate', value: 3 } })),
    );
    const idField = (id: bigint) =>
      Buffer.from(toBinary(ClientToServerSchema, create(ClientToServerSchema, { streamId: id })));
    const late = decodeClientToServer(Buffer.concat([frame, idField(2n ** 60n)]));
    assert.equal(late.streamId, 2n ** 60n);
    assert.deepEqual(late.frame, { $case: 'windowUpdate', value: 3 });
    const twice = decodeClientToServer(Buffer.concat([idField(7n), frame, idField(-(2n ** 63n))]));
    assert.equal(twice.streamId, -(2n ** 63n));
    assert.deepEqual(twice.frame, { $case: 'windowUpdate', value: 3 });
    assert.equal(decodeClientToServer(frame).streamId, 0, 'absent is 0');
  });

  it('rejects truncated frames instead of guessing', () => {
    const whole = encodeClientToServer({ streamId: 2n ** 62n, frame: { $case: 'moreRequestData', value: chunk } });
    for (const cut of [1, 5, 12, whole.length - 1]) {
      assert.throws(() => decodeClientToServer(whole.subarray(0, cut)), `cut at ${cut}`);
    }
  });

  it('counts ids on past 2^53 exactly', () => {
    let id: StreamId = Number.MAX_SAFE_INTEGER - 1;
    const seen: StreamId[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push(id);
      id = nextStreamId(id);
    }
    assert.deepEqual(seen, [2 ** 53 - 2, 2 ** 53 - 1, 2n ** 53n, 2n ** 53n + 1n]);
  });
});
