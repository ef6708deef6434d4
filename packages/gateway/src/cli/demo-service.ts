// The sample service of `npm start`, defined in proto/demo/notes.proto and
// loaded at run time with @grpc/proto-loader, so the same definition drives
// the messages' protobuf encoding and the server reflection that tools like
// grpcurl use to discover it.
import { fileURLToPath } from 'node:url';
import {
  type GrpcObject,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  loadPackageDefinition,
  type Server,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

/** The proto file, shipped in the package's proto/ folder. */
const PROTO = fileURLToPath(new URL('../../proto/demo/notes.proto', import.meta.url));

/** The demo's message (demo.Note). */
export interface Note {
  text: string;
  n?: number;
}

const definition = loadSync(PROTO, { defaults: true });
const demo = loadPackageDefinition(definition).demo as GrpcObject;
const Notes = demo.Notes as ServiceClientConstructor;

/** demo.Notes: one method of each call kind. */
export const NotesService: ServiceDefinition = Notes.service;

/** A generated-style client of demo.Notes. */
export const NotesClient = Notes;

const echo: handleUnaryCall<Note, Note> = (call, callback) => {
  callback(null, { text: `echo: ${call.request.text} (via ${call.getPeer()})` });
};

const count: handleClientStreamingCall<Note, Note> = (call, callback) => {
  let n = 0;
  call.on('data', () => n++);
  call.on('end', () => callback(null, { text: `received ${n} notes`, n }));
};

const repeat: handleServerStreamingCall<Note, Note> = (call) => {
  const times = call.request.n || 3;
  for (let i = 1; i <= times; i++) call.write({ text: `${call.request.text} #${i}`, n: i });
  call.end();
};

const chat: handleBidiStreamingCall<Note, Note> = (call) => {
  call.on('data', (note: Note) => call.write({ text: note.text.toUpperCase() }));
  call.on('end', () => call.end());
};

/** The implementation of {@link NotesService}. */
export const notesImplementation = { echo, count, repeat, chat };

/** Adds demo.Notes and gRPC server reflection (v1 and v1alpha) describing it to `server`. */
export function addNotesService(server: Pick<Server, 'addService'>): void {
  server.addService(NotesService, notesImplementation);
  new ReflectionService(definition).addToServer(server);
}
