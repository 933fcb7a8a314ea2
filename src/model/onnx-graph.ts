import onnxProto from 'onnx-proto';

/** The ONNX protobuf namespace (onnx-proto is CommonJS; this is its one import site). */
export const onnx = onnxProto.onnx;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;
export type GraphProto = InstanceType<typeof onnx.GraphProto>;
export type NodeProto = InstanceType<typeof onnx.NodeProto>;
export type TensorProto = InstanceType<typeof onnx.TensorProto>;

/** int64 fields decode as Long objects or numbers; this gives a number. */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof (v as { toNumber?: () => number }).toNumber === 'function') return (v as { toNumber: () => number }).toNumber();
  return Number(v);
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** The default-domain opset the model imports. */
export function defaultOpset(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : 0;
}

/** Integer attribute of a node, or `fallback` when absent. */
export function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = node.attribute.find((x) => x.name === name);
  return a ? toNumber(a.i) : fallback;
}

/** Float attribute of a node, or `fallback` when absent. */
export function floatAttr(node: NodeProto, name: string, fallback: number): number {
  const a = node.attribute.find((x) => x.name === name);
  return a ? (a.f ?? fallback) : fallback;
}

/** A node builder: `node('Gather', [data, idx], [out], name, { axis: 0 })`. */
export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, ints: Record<string, number> = {}): NodeProto {
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    name,
    attribute: Object.entries(ints).map(([k, v]) => onnx.AttributeProto.create({ name: k, type: onnx.AttributeProto.AttributeType.INT, i: v })),
  });
}

/** A float32 graph input with symbolic and fixed dims, e.g. `['adapters', 256, 'rank']`. */
export function makeInput(name: string, elemType: number, dims: Array<number | string>) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => (typeof d === 'number' ? onnx.TensorShapeProto.Dimension.create({ dimValue: d }) : onnx.TensorShapeProto.Dimension.create({ dimParam: d }))),
        }),
      }),
    }),
  });
}

/** An int64 1-D constant initializer (Squeeze/Unsqueeze axes take these since opset 13). */
export function makeInt64Initializer(name: string, values: number[]): TensorProto {
  return onnx.TensorProto.create({ name, dataType: onnx.TensorProto.DataType.INT64, dims: [values.length], int64Data: values });
}

export const ELEM_FLOAT = onnx.TensorProto.DataType.FLOAT;
export const ELEM_INT64 = onnx.TensorProto.DataType.INT64;
