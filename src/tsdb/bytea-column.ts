/**
 * Many bytea values as one binary parameter cut by offsets: node-postgres sends an array of
 * Buffers as hex text (twice the bytes, an escape per byte on both ends), one Buffer as binary.
 * In SQL: unnest(${offsets}::int4[], ${lengths}::int4[]) AS u(o, len), then
 * substring(${blob}::bytea FROM o FOR len).
 */
export function byteaColumn(buffers: Buffer[]): { blob: Buffer; offsets: number[]; lengths: number[] } {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let offset = 1; // substring counts from 1
  for (const b of buffers) {
    offsets.push(offset);
    lengths.push(b.length);
    offset += b.length;
  }
  return { blob: Buffer.concat(buffers), offsets, lengths };
}
