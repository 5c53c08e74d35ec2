"""The ground floor every room uses: errors, file I/O, array and mask checks, atomic
writes, the device choice and the version.

It imports nothing from the model, training or the plugin (tests/test_architecture.py).
"""

__version__ = "0.1.0"
