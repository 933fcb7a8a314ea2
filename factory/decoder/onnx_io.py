"""ONNX export of the decoder in optimum's `text-generation-with-past` layout, and the way back
(REUSE_BASE=1 reloads the base weights from the committed slotted model)."""
import torch
import torch.nn as nn

def io_names(layers):
    past = [n for i in range(layers) for n in (f"past_key_values.{i}.key", f"past_key_values.{i}.value")]
    present = [n for i in range(layers) for n in (f"present.{i}.key", f"present.{i}.value")]
    return past, present

def export_with_past(model, path):
    c = model.c
    model.eval()
    L, kvh, dh = c["layers"], c["kv_heads"], c["hidden"] // c["heads"]
    b, s, p = 2, 3, 4
    ids = torch.randint(5, c["vocab"], (b, s))
    mask = torch.ones(b, p + s, dtype=torch.long)
    pos = torch.arange(p, p + s).expand(b, s).contiguous()
    past = [torch.zeros(b, kvh, p, dh) for _ in range(2 * L)]
    past_names, present_names = io_names(L)
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for n in past_names:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in present_names:
        dyn[n] = {0: "batch_size", 2: "total_sequence_length"}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, pos, *past), path,
                          input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=dyn,
                          opset_version=17, do_constant_folding=True)
    restore_model_scope(path)

def restore_model_scope(path):
    """torch 1.13's exporter drops the `model` scope from node names (`/layers.0/self_attn/q_proj/MatMul`);
    optimum and torch ≥ 2 write `/model/layers.0/…`, the module path PEFT keys use. Put it back."""
    import onnx
    m = onnx.load(path)
    for n in m.graph.node:
        if n.name.startswith(("/embed_tokens/", "/layers.", "/norm/")):
            n.name = "/model" + n.name
    onnx.save(m, path)

def load_base_from_onnx(model, path):
    """Fill `model` from an exported (plain or slotted) graph: named initializers by name, and
    each linear layer's weight from the initializer its `/module/path/MatMul` node multiplies by."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    state = model.state_dict()
    loaded = set()
    for name in list(state):
        if name in inits:
            state[name] = torch.from_numpy(inits[name].copy()); loaded.add(name)
    for n in g.node:
        if n.op_type == "MatMul" and n.name.endswith("/MatMul") and len(n.input) > 1 and n.input[1] in inits:
            mod = n.name[1:].rsplit("/", 1)[0].replace("/", ".")
            if mod + ".weight" in state:
                state[mod + ".weight"] = torch.from_numpy(inits[n.input[1]].T.copy()); loaded.add(mod + ".weight")
    missing = [k for k in state if k not in loaded]
    if missing:
        raise SystemExit(f"{path}: no weights found for {missing[:5]}{'…' if len(missing) > 5 else ''}")
    model.load_state_dict(state)
