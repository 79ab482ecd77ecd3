import * as zlib from "node:zlib";
import { promisify } from "node:util";

type Codec = (data: Buffer) => Promise<Buffer>;

/** node:zlib's zstd (Node ≥ 22.15: runs on the thread pool), when this Node has it; @types/node 20 does not declare it. */
type CallbackCodec = (data: Buffer, cb: (err: Error | null, out: Buffer) => void) => void;
const native = zlib as unknown as { zstdCompress?: CallbackCodec; zstdDecompress?: CallbackCodec };

let codecs: Promise<{ compress: Codec; decompress: Codec }> | undefined;

/**
 * Compression for the archive: node:zlib where it has zstd, else zstd-napi (Node 20), loaded only
 * then. zstd-napi's one-shot calls run on the main thread: ~10 MiB of JSON takes some tens of ms,
 * once per archive file.
 */
function zstd(): Promise<{ compress: Codec; decompress: Codec }> {
  codecs ??= (async () => {
    if (native.zstdCompress && native.zstdDecompress) {
      return { compress: promisify(native.zstdCompress), decompress: promisify(native.zstdDecompress) };
    }
    const napi = await import("zstd-napi");
    return { compress: async (data: Buffer) => napi.compress(data), decompress: async (data: Buffer) => napi.decompress(data) };
  })();
  return codecs;
}

/** `data` as one zstd frame, as the `zstd` command-line tool reads it. */
export async function compress(data: Buffer): Promise<Buffer> {
  return (await zstd()).compress(data);
}

export async function decompress(data: Buffer): Promise<Buffer> {
  return (await zstd()).decompress(data);
}
