"""The package version, written here and nowhere else.

The build reads it from this file (``[tool.hatch.version]`` in ``pyproject.toml``); the package
exports it as ``xai_images.__version__``, sends it in the ``User-Agent`` and ``xai-images
--version`` prints it.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
