/**
 * Protobuf encoding into one reused writer. ts-proto's `encode()` starts a new BinaryWriter
 * per message (128 bytes, doubled as it fills: an audit record takes four allocations and
 * copies) and the generated gRPC serializers copy the result once more with `Buffer.from`.
 * On the check path (audit record, response) that garbage is paid per decision; here the
 * writer's buffer is kept between calls and the result is one exact-size copy.
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';

export interface Encoder<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

/** Messages larger than this get their own writer afterwards, so one big message is not kept. */
const KEEP_BYTES = 64 * 1024;

let writer = new BinaryWriter();

/** `type.encode(message)` as a Buffer (its own memory, safe to keep). Synchronous, not reentrant. */
export function encodeMessage<T>(type: Encoder<T>, message: T): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = type.encode(message, writer).finish();
  } catch (err) {
    writer = new BinaryWriter(); // a throw mid-message leaves the writer's position and forks set
    throw err;
  }
  if (bytes.length > KEEP_BYTES) writer = new BinaryWriter();
  // finish() returned a fresh copy: wrap it, do not copy it again.
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A gRPC method definition whose response serializer encodes with `encodeMessage`. */
export function withSharedResponseWriter<D extends { responseSerialize: (v: never) => Buffer }, R>(
  method: D,
  type: Encoder<R>,
): D {
  return { ...method, responseSerialize: (v: R) => encodeMessage(type, v) };
}

/** Marks a request whose bytes could not be decoded (see withGuardedRequest). */
const UNDECODABLE = Symbol('undecodable');

/**
 * A gRPC method definition whose request deserializer never throws: grpc-js answers a throw
 * with INTERNAL "Error deserializing request", but a message that does not decode (e.g. a
 * context nested beyond the decoder's depth limit) is the caller's error — the handler sees
 * `undecodable(request)` and answers INVALID_ARGUMENT.
 */
export function withGuardedRequest<D extends { requestDeserialize: (b: Buffer) => unknown }>(method: D): D {
  const decode = method.requestDeserialize;
  return {
    ...method,
    requestDeserialize: (b: Buffer) => {
      try {
        return decode(b);
      } catch (err) {
        return { [UNDECODABLE]: (err as Error).message };
      }
    },
  };
}

/** The decoder's complaint when the request did not decode, else undefined. */
export function undecodable(request: unknown): string | undefined {
  return typeof request === 'object' && request !== null
    ? ((request as Record<symbol, string>)[UNDECODABLE] ?? undefined)
    : undefined;
}
