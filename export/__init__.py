"""Export of EfficientSAM3 to ExecuTorch (XNNPACK) and ONNX, and the checks that go with it.

Modules (none does work at import):
    wrappers   the three stateless entry points (encode_frame, decode, encode_text) with example inputs
    fuse       deployment form: BatchNorms folded, multi-branch blocks re-parameterised
    lowering   ATen rewrites + to_edge_transform_and_lower(XnnpackPartitioner)
    quantize   PT2E int8 for XNNPACK, calibrated on real frames
    executorch / onnx   the export CLIs (python -m export.executorch / python -m export.onnx)
    metadata   the JSON stored beside every exported model
    programs   calling an exported .pte / ONNX directory from Python
    parity     python -m export.parity: exported program vs eager PyTorch
    measure    per-frame latency side by side, time outside the XNNPACK delegate
    frames, config, progress   frame sources, typed settings, stage timing
"""
