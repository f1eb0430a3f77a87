"""sparsemap_train — learned dictionaries, the Lambda network, training and ONNX export.

Modules: ``recon`` (JAX reconstruction of docs/design.md §3.7, differentiable),
``features`` (the Lambda network's input features, §4), ``lambda_net`` (the network),
``export`` (f32 / int8 ONNX). CPU only; see models/README.md.
"""
