"""Pure product normalisation, shared by the stream worker and training.

Nothing here does I/O: ``normalise_product`` turns a ``RawProduct`` into a
``NormalisedProduct`` and ``fingerprint`` hashes the categorisation fields.
"""

from normaliser.fingerprint import fingerprint
from normaliser.product import as_raw, normalise_product

__all__ = ["as_raw", "fingerprint", "normalise_product"]
