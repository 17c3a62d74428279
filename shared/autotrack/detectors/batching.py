"""A YOLOX export with a free batch axis, so that a GPU gets several frames per call.

The exports fix the batch at 1: the input and output shapes say so, and the three Reshape
nodes that flatten each head's grid hold the literal shape [1, 85, -1]. Setting those 1s to
0 (ONNX: copy the input's size) and the declared batch dimensions to a name makes the same
weights run any batch. The copy lives in memory; the file on disk is never changed.
"""

from __future__ import annotations

from pathlib import Path

from autotrack.errors import AutotrackError

BATCH_DIM = "batch"


def with_batch_axis(path: str | Path) -> bytes:
    """The serialized model at ``path`` with batch dimension free; AutotrackError when the
    graph has a Reshape whose leading size is not the fixed batch of 1 or a copy of it."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise AutotrackError('batched inference rewrites the graph with the onnx package: '
                             'pip install "cvat-autotrack[cuda]" (or onnx)') from None
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_init = initializers.get(node.input[1])
        if shape_init is None:
            raise AutotrackError(f"{path}: Reshape {node.name!r} takes a computed shape; "
                                 "cannot free its batch axis")
        shape = numpy_helper.to_array(shape_init).copy()
        if shape[0] not in (0, 1):
            raise AutotrackError(f"{path}: Reshape {node.name!r} to {shape.tolist()} does not "
                                 "keep the batch first; cannot free its batch axis")
        shape[0] = 0
        shape_init.CopyFrom(numpy_helper.from_array(shape, shape_init.name))
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del graph.value_info[:]  # inferred shapes of intermediates name the old batch of 1
    return model.SerializeToString()
