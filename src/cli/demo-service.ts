import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServiceDefinition,
} from '@grpc/grpc-js';
import { type MessageCodec, methodDefinition } from './method-definition.js';

/** The demo's message: JSON on the wire, so the demo needs no .proto. */
export interface Note {
  text: string;
  n?: number;
}

const json: MessageCodec<Note> = {
  serialize: (value) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes) => JSON.parse(bytes.toString('utf8')) as Note,
};

const method = (name: string, requestStream: boolean, responseStream: boolean) =>
  methodDefinition('demo.Notes', name, requestStream, responseStream, json);

/** A small service with one method of each call kind. */
export const NotesService = {
  echo: method('Echo', false, false),
  count: method('Count', true, false),
  repeat: method('Repeat', false, true),
  chat: method('Chat', true, true),
} satisfies ServiceDefinition;

const echo: handleUnaryCall<Note, Note> = (call, callback) => {
  callback(null, { text: `echo: ${call.request.text} (via ${call.getPeer()})` });
};

const count: handleClientStreamingCall<Note, Note> = (call, callback) => {
  let n = 0;
  call.on('data', () => n++);
  call.on('end', () => callback(null, { text: `received ${n} notes`, n }));
};

const repeat: handleServerStreamingCall<Note, Note> = (call) => {
  const times = call.request.n ?? 3;
  for (let i = 1; i <= times; i++) call.write({ text: `${call.request.text} #${i}`, n: i });
  call.end();
};

const chat: handleBidiStreamingCall<Note, Note> = (call) => {
  call.on('data', (note: Note) => call.write({ text: note.text.toUpperCase() }));
  call.on('end', () => call.end());
};

/** The implementation of {@link NotesService}. */
export const notesImplementation = { echo, count, repeat, chat };
