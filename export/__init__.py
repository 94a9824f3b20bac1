"""Export of trained models to ONNX with an ensemble manifest (torch in, ONNX out)."""
