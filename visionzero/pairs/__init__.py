"""Image pairs (original, edited) with a record of what changed, for three domains.

clevr  CLEVR-style 3-D scenes ray cast with numpy; two objects change colour and shape
chart  matplotlib charts from a JSON spec; two values, labels or colours swap
photo  real photos (user folder or scikit-image's) with local offline edits, or ready pairs

`generate_pairs` writes a dataset folder (images/ + manifest.jsonl); `read_manifest` reads
it back as `PairRecord`s; `make_contact_sheet` draws samples for a person to look at.
"""

from visionzero.pairs.contact_sheet import make_contact_sheet
from visionzero.pairs.generate import (
    DOMAINS,
    GenerateReport,
    OutputError,
    generate_pairs,
    make_pair,
    pair_seed,
)
from visionzero.pairs.manifest import (
    MANIFEST_NAME,
    ManifestError,
    PairRecord,
    read_manifest,
    write_manifest,
)
from visionzero.pairs.sources import SourceError

__all__ = [
    "DOMAINS",
    "MANIFEST_NAME",
    "GenerateReport",
    "ManifestError",
    "OutputError",
    "PairRecord",
    "SourceError",
    "generate_pairs",
    "make_contact_sheet",
    "make_pair",
    "pair_seed",
    "read_manifest",
    "write_manifest",
]
