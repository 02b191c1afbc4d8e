"""catstream: streaming product categorisation for affiliate e-commerce.

This package holds what every stage shares: settings, logging, metrics, the
taxonomy and the command line. The stages themselves live in the top-level
packages ``feeds`` → ``streams`` → ``workers``; ``schemas`` are the contracts.
"""

__version__ = "0.1.0"
