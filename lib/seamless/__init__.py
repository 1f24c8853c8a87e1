"""seamless: cached, content-addressed transformations as small Unix tools.

Importing the package imports nothing else: tools load only what they use.
"""

__version__ = "0.1.0"
