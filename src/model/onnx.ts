// A thin builder over onnx-proto's generated protobuf classes: nodes, constants and typed inputs,
// and nothing else. onnx-proto is CommonJS, hence the default import.
import pkg from 'onnx-proto';
import type { onnx as OnnxNS } from 'onnx-proto';

const onnx = (pkg as unknown as { onnx: typeof OnnxNS }).onnx;
type Attr = number | number[] | string;
const FLOAT = 1;
const INT64 = 7;

export class GraphBuilder {
  private nodes: OnnxNS.INodeProto[] = [];
  private inits: OnnxNS.ITensorProto[] = [];
  private inputs: OnnxNS.IValueInfoProto[] = [];
  private outputs: OnnxNS.IValueInfoProto[] = [];
  private counter = 0;

  /** The nodes added so far, in order (a topological order: every node follows its inputs' producers). */
  get nodeList(): readonly OnnxNS.INodeProto[] {
    return this.nodes;
  }

  /** The values of an int64 initializer added with `ints`, or undefined. */
  intValues(name: string): number[] | undefined {
    const t = this.inits.find((x) => x.name === name && x.dataType === INT64);
    return t ? (t.int64Data as number[]).map(Number) : undefined;
  }

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Add a node; returns its (first) output name. */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, out = this.fresh(type)): string {
    const attribute = Object.entries(attrs).map(([name, v]): OnnxNS.IAttributeProto => {
      if (typeof v === 'string') return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) };
      if (Array.isArray(v)) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v };
      return { name, type: onnx.AttributeProto.AttributeType.INT, i: v };
    });
    this.nodes.push({ opType: type, input: inputs, output: [out], name: out, attribute });
    return out;
  }

  /** A float32 initializer; the bytes are referenced, not copied, until the model is encoded. */
  weight(name: string, dims: number[], data: Float32Array): string {
    this.inits.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  ints(name: string, values: number[]): string {
    this.inits.push({ name, dims: [values.length], dataType: INT64, int64Data: values });
    return name;
  }

  /** A float32 graph input; string dims are symbolic (e.g. the batch). */
  input(name: string, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  output(name: string, dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, dims));
  }

  encode(opset = 17): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'channel-awareness',
      opsetImport: [{ domain: '', version: opset }],
      graph: { name: 'biggan_deep_trunk', node: this.nodes, initializer: this.inits, input: this.inputs, output: this.outputs },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, dims: (number | string)[]): OnnxNS.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}
