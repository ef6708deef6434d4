import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServiceDefinition,
} from '@grpc/grpc-js';

/** The demo's message: JSON on the wire, so the demo needs no .proto. */
export interface Note {
  text: string;
  n?: number;
}

const encode = (value: Note): Buffer => Buffer.from(JSON.stringify(value));
const decode = (bytes: Buffer): Note => JSON.parse(bytes.toString('utf8')) as Note;

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/demo.Notes/${name}`,
    requestStream,
    responseStream,
    requestSerialize: encode,
    requestDeserialize: decode,
    responseSerialize: encode,
    responseDeserialize: decode,
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

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
