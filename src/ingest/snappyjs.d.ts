// snappyjs 0.7 ships no types; these are the two functions Specta uses.
declare module "snappyjs" {
  /** Decodes a snappy block; throws when its declared length exceeds maxLength or the block is invalid. */
  export function uncompress(compressed: Uint8Array, maxLength?: number): Uint8Array;
  /** Encodes a snappy block (tests and benchmarks build remote-write requests with it). */
  export function compress(uncompressed: Uint8Array): Uint8Array;
}
