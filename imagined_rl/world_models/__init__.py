"""World models: one module per family, each registered by name (``registry.model``)."""
