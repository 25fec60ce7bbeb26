"""The ``raylift`` command line: one module per noun, thin wrappers over the library."""
