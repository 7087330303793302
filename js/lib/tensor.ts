// Decoding of the binary tensor wire format shared by every view:
// Python sends {view: <binary buffer>, dtype: "float32" | "uint8", shape: number[]}.

export type DType = "float32" | "uint8";

/** What arrives from the kernel: the buffer may be a DataView, an ArrayBuffer or a typed array. */
export interface WireTensor {
  view: DataView | ArrayBuffer | ArrayBufferView | null;
  dtype: DType;
  shape: number[];
}

export interface Tensor<T extends Float32Array | Uint8Array = Float32Array | Uint8Array> {
  data: T;
  shape: number[];
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Turn a wire tensor into a typed array of the right element type (zero-copy where aligned). */
export function decodeTensor(t: WireTensor | null | undefined): Tensor {
  if (!t || t.view == null) return { data: new Float32Array(0), shape: [0] };
  const shape = Array.from(t.shape ?? []);
  const n = numel(shape);
  let buffer: ArrayBuffer;
  let offset = 0;
  let byteLength: number;
  if (t.view instanceof ArrayBuffer) {
    buffer = t.view;
    byteLength = buffer.byteLength;
  } else {
    const v = t.view as ArrayBufferView;
    buffer = v.buffer as ArrayBuffer;
    offset = v.byteOffset;
    byteLength = v.byteLength;
  }
  if (t.dtype === "uint8") {
    if (byteLength < n) throw new Error(`tensor buffer too short: ${byteLength} bytes for ${n} uint8`);
    return { data: new Uint8Array(buffer, offset, n), shape };
  }
  if (t.dtype === "float32") {
    if (byteLength < 4 * n) throw new Error(`tensor buffer too short: ${byteLength} bytes for ${n} float32`);
    if (offset % 4 === 0) return { data: new Float32Array(buffer, offset, n), shape };
    return { data: new Float32Array(buffer.slice(offset, offset + 4 * n)), shape };
  }
  throw new Error(`unsupported tensor dtype: ${String(t.dtype)}`);
}

/** The i-th slice along the first dimension, as a view into the same buffer. */
export function slice0<T extends Float32Array | Uint8Array>(t: Tensor<T>, i: number): Tensor<T> {
  const inner = numel(t.shape.slice(1));
  const data = t.data.subarray(i * inner, (i + 1) * inner) as T;
  return { data, shape: t.shape.slice(1) };
}
