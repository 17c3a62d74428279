"""Give an ONNX model exported with batch size 1 a free batch dimension, without the onnx package.

The OpenVINO person Re-ID exports declare their input as [1, 256, 128, 3] and flatten with
Reshape constants that start with 1, so onnxruntime refuses any other batch. Here the model's
protobuf is edited on the wire (the handful of ONNX message fields involved are read and
re-encoded directly, so the core package needs no ``onnx`` dependency):

- the first dimension of every graph input and output becomes the symbolic ``batch``;
- a Reshape target shape held in an initializer and starting with 1 starts with 0 instead
  ("copy the input's dimension" in ONNX when ``allowzero`` is 0), when only Reshapes use it;
- a Reduce* node whose ``axes`` attribute includes the batch axis 0 besides others (the
  exports normalise each image over all of [N, H, W, C], which is per image only at batch 1)
  reduces over the other axes only;
- ``value_info`` (optional shape hints, which would still say 1) is dropped.

Whether the edited model really computes each sample independently is not assumed: the
caller checks batched against one-by-one outputs before trusting it (see onnx_embedder.py).
"""

from __future__ import annotations

import struct

# Field numbers from onnx.proto (stable since IR version 3).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
_NODE_INPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 4, 5
_ATTRIBUTE_NAME, _ATTRIBUTE_INT, _ATTRIBUTE_INTS = 1, 3, 8
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_INT64_DATA, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 7, 8, 9
_VALUE_INFO_NAME, _VALUE_INFO_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_SHAPE = 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
_INT64 = 7
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

Field = tuple[int, int, int | bytes]  # (field number, wire type, value)


class ProtobufError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are ten-byte two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parse(data: bytes) -> list[Field]:
    """A message's fields in wire order (unknown fields kept, so re-encoding is lossless)."""
    fields: list[Field] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _FIXED64:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == _FIXED32:
            value, pos = data[pos:pos + 4], pos + 4
        elif wire == _BYTES:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError("truncated field")
        fields.append((number, wire, value))
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _varint(number << 3 | wire)
        if wire == _VARINT:
            out += _varint(value)  # type: ignore[arg-type]
        elif wire == _BYTES:
            out += _varint(len(value)) + value  # type: ignore[arg-type, operator]
        else:
            out += value  # type: ignore[operator]
    return bytes(out)


def _first(fields: list[Field], number: int) -> int | bytes | None:
    return next((v for n, _, v in fields if n == number), None)


def _string(fields: list[Field], number: int) -> str:
    value = _first(fields, number)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _free_batch(value_info: bytes) -> bytes | None:
    """The ValueInfoProto with its first dimension symbolic, or None if it has no shape."""
    info = parse(value_info)
    for i, (number, wire, type_bytes) in enumerate(info):
        if number != _VALUE_INFO_TYPE or not isinstance(type_bytes, bytes):
            continue
        type_proto = parse(type_bytes)
        for j, (tn, tw, tensor_bytes) in enumerate(type_proto):
            if tn != _TYPE_TENSOR or not isinstance(tensor_bytes, bytes):
                continue
            tensor_type = parse(tensor_bytes)
            for k, (sn, sw, shape_bytes) in enumerate(tensor_type):
                if sn != _TENSOR_TYPE_SHAPE or not isinstance(shape_bytes, bytes):
                    continue
                shape = parse(shape_bytes)
                dims = [d for d, (n, _, _) in enumerate(shape) if n == _SHAPE_DIM]
                if not dims:
                    return None
                shape[dims[0]] = (_SHAPE_DIM, _BYTES, encode([(_DIM_PARAM, _BYTES, b"batch")]))
                tensor_type[k] = (sn, sw, encode(shape))
                type_proto[j] = (tn, tw, encode(tensor_type))
                info[i] = (number, wire, encode(type_proto))
                return encode(info)
    return None


def _int64_values(tensor: list[Field]) -> list[int] | None:
    """The int64 contents of a TensorProto (raw_data or int64_data), or None."""
    if _first(tensor, _TENSOR_DATA_TYPE) != _INT64:
        return None
    raw = _first(tensor, _TENSOR_RAW_DATA)
    if isinstance(raw, bytes) and len(raw) % 8 == 0:
        return list(struct.unpack(f"<{len(raw) // 8}q", raw))
    return _repeated_ints(tensor, _TENSOR_INT64_DATA)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _repeated_ints(message: list[Field], field_number: int) -> list[int]:
    """A repeated int64 field, written one varint per entry or packed into one byte string."""
    values: list[int] = []
    for number, wire, value in message:
        if number != field_number:
            continue
        if wire == _VARINT:
            values.append(_signed(value))  # type: ignore[arg-type]
        elif isinstance(value, bytes):  # packed
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(_signed(v))
    return values


def _attribute_ints(attribute: list[Field]) -> list[int]:
    return _repeated_ints(attribute, _ATTRIBUTE_INTS)


def _per_sample_reduction(node_bytes: bytes) -> bytes | None:
    """A Reduce* node reducing over axis 0 and others, rewritten to skip axis 0; else None."""
    node = parse(node_bytes)
    if not _string(node, _NODE_OP_TYPE).startswith("Reduce"):
        return None
    for i, (number, wire, value) in enumerate(node):
        if number != _NODE_ATTRIBUTE or not isinstance(value, bytes):
            continue
        attribute = parse(value)
        if _string(attribute, _ATTRIBUTE_NAME) != "axes":
            continue
        axes = _attribute_ints(attribute)
        if 0 not in axes or len(axes) < 2:
            return None
        kept = [f for f in attribute if f[0] != _ATTRIBUTE_INTS]
        packed = b"".join(_varint(a) for a in axes if a != 0)
        kept.append((_ATTRIBUTE_INTS, _BYTES, packed))
        node[i] = (number, wire, encode(kept))
        return encode(node)
    return None


def _with_int64_values(tensor: list[Field], values: list[int]) -> bytes:
    kept = [f for f in tensor if f[0] not in (_TENSOR_RAW_DATA, _TENSOR_INT64_DATA)]
    kept.append((_TENSOR_RAW_DATA, _BYTES, struct.pack(f"<{len(values)}q", *values)))
    return encode(kept)


def make_batch_dynamic(model_bytes: bytes) -> tuple[bytes, int]:
    """The model with a free batch dimension, and how many nodes or constants were changed.

    Raises ProtobufError when the bytes are not a model this edit understands.
    """
    model = parse(model_bytes)
    graph_index = next((i for i, (n, w, _) in enumerate(model)
                        if n == _MODEL_GRAPH and w == _BYTES), None)
    if graph_index is None:
        raise ProtobufError("no graph in the model")
    graph = parse(model[graph_index][2])  # type: ignore[arg-type]

    initializers: dict[str, int] = {}
    for i, (number, _, value) in enumerate(graph):
        if number == _GRAPH_INITIALIZER and isinstance(value, bytes):
            initializers[_string(parse(value), _TENSOR_NAME)] = i

    # Which initializers feed only the shape input of Reshapes that do not allow zeros.
    reshape_shapes: set[str] = set()
    other_uses: set[str] = set()
    for number, _, value in graph:
        if number != _GRAPH_NODE or not isinstance(value, bytes):
            continue
        node = parse(value)
        inputs = [v.decode("utf-8", "replace") for n, _, v in node
                  if n == _NODE_INPUT and isinstance(v, bytes)]
        allow_zero = any(
            _string(parse(v), _ATTRIBUTE_NAME) == "allowzero"
            and _first(parse(v), _ATTRIBUTE_INT) == 1
            for n, _, v in node if n == _NODE_ATTRIBUTE and isinstance(v, bytes))
        if _string(node, _NODE_OP_TYPE) == "Reshape" and len(inputs) == 2 and not allow_zero:
            reshape_shapes.add(inputs[1])
            other_uses.update(inputs[:1])
        else:
            other_uses.update(inputs)

    changed = 0
    for name in sorted(reshape_shapes - other_uses):
        index = initializers.get(name)
        if index is None:
            continue
        tensor = parse(graph[index][2])  # type: ignore[arg-type]
        values = _int64_values(tensor)
        if values and values[0] == 1:
            edited_tensor = _with_int64_values(tensor, [0, *values[1:]])
            graph[index] = (_GRAPH_INITIALIZER, _BYTES, edited_tensor)
            changed += 1

    edited: list[Field] = []
    for number, wire, value in graph:
        if number == _GRAPH_VALUE_INFO:
            continue
        if number == _GRAPH_NODE and isinstance(value, bytes):
            rewritten = _per_sample_reduction(value)
            if rewritten is not None:
                value = rewritten
                changed += 1
        if number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and isinstance(value, bytes):
            if _string(parse(value), _VALUE_INFO_NAME) not in initializers:
                value = _free_batch(value) or value
        edited.append((number, wire, value))
    model[graph_index] = (_MODEL_GRAPH, _BYTES, encode(edited))
    return encode(model), changed
