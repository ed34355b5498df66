// Random-access bytes for the checkpoint readers, from memory or from a file. Reading a file piece by piece
// (the pickle, then one storage at a time) instead of all at once is what keeps loading a checkpoint near 1× its
// size: the whole file never sits in memory next to the tensors built from it.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface ByteSource {
  readonly length: number;
  /**
   * `length` bytes at `offset`. From memory this is a view; from a file it is a fresh buffer starting at byte 0
   * of its own ArrayBuffer (so float32 data in it is aligned). Reading past the end is a truncation error.
   */
  read(offset: number, length: number): Uint8Array;
}

function checkRange(src: ByteSource, offset: number, length: number): void {
  if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0)) {
    throw new Error(`bad read of ${length} bytes at ${offset}`);
  }
  if (offset + length > src.length) {
    throw new Error(`truncated: expected ${length} bytes at offset ${offset}, file has ${Math.max(0, src.length - offset)}`);
  }
}

export function memorySource(buf: Uint8Array): ByteSource {
  const src: ByteSource = {
    length: buf.length,
    read(offset, length) {
      checkRange(src, offset, length);
      return buf.subarray(offset, offset + length);
    },
  };
  return src;
}

export interface FileSource extends ByteSource { close(): void }

export function fileSource(path: string): FileSource {
  const fd = openSync(path, 'r');
  const length = fstatSync(fd).size;
  const src: FileSource = {
    length,
    read(offset, n) {
      checkRange(src, offset, n);
      const out = new Uint8Array(n);
      for (let done = 0; done < n;) {
        const got = readSync(fd, out, done, n - done, offset + done);
        if (got === 0) throw new Error(`truncated: the file ended at byte ${offset + done} while reading`);
        done += got;
      }
      return out;
    },
    close() { closeSync(fd); },
  };
  return src;
}
