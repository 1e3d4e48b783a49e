"""physok: tokeniser pretraining for physics foundation models.

Subpackages: `physok.data` (The Well format, embedded physics generators, loaders).
"""

__version__ = "0.1.0"
