// Compares the two protobuf code generators considered for the tunnel frames
// (ts-proto and protobuf-es) on the frames that dominate a busy tunnel: a
// 16 KiB data chunk and a window update. Run: node dist/bench/codec.js
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ClientToServer } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { ClientToServerSchema } from './gen-es/grpctunnel/v1/tunnel_pb.js';

const chunk = Buffer.alloc(16384, 7);
const iterations = 200_000;

function time(label: string, fn: () => void): number {
  for (let i = 0; i < 5000; i++) fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  console.log(`${label.padEnd(44)} ${ns.toFixed(0).padStart(7)} ns/op`);
  return ns;
}

const tsData: ClientToServer = { streamId: 12, frame: { $case: 'moreRequestData', value: chunk } };
const tsWin: ClientToServer = { streamId: 12, frame: { $case: 'windowUpdate', value: 32768 } };
const esData = create(ClientToServerSchema, { streamId: 12n, frame: { case: 'moreRequestData', value: chunk } });
const esWin = create(ClientToServerSchema, { streamId: 12n, frame: { case: 'windowUpdate', value: 32768 } });
const dataBytes = ClientToServer.encode(tsData).finish();
const winBytes = ClientToServer.encode(tsWin).finish();

let sink = 0;
time('ts-proto     encode 16 KiB data', () => {
  sink += ClientToServer.encode(tsData).finish().length;
});
time('protobuf-es  encode 16 KiB data', () => {
  sink += toBinary(ClientToServerSchema, esData).length;
});
time('ts-proto     decode 16 KiB data', () => {
  sink += ClientToServer.decode(dataBytes).streamId;
});
time('protobuf-es  decode 16 KiB data', () => {
  sink += Number(fromBinary(ClientToServerSchema, dataBytes).streamId);
});
time('ts-proto     encode window update', () => {
  sink += ClientToServer.encode(tsWin).finish().length;
});
time('protobuf-es  encode window update', () => {
  sink += toBinary(ClientToServerSchema, esWin).length;
});
time('ts-proto     decode window update', () => {
  sink += ClientToServer.decode(winBytes).streamId;
});
time('protobuf-es  decode window update', () => {
  sink += Number(fromBinary(ClientToServerSchema, winBytes).streamId);
});
if (sink === 0) console.log('unreachable');
