"""Generate the CRDs in ``crds/`` from the pydantic models in ``api/v1alpha1``.

``python -m internlm_operator.crdgen --out crds`` writes them; ``--check crds`` fails with a diff
when the committed files differ from what the models generate.
"""

from __future__ import annotations

from .crd import PRINTER_COLUMNS, build_crd, file_name, openapi_schema, render, render_all
from .schema import SchemaError, structural_schema

__all__ = [
    "PRINTER_COLUMNS",
    "SchemaError",
    "build_crd",
    "file_name",
    "openapi_schema",
    "render",
    "render_all",
    "structural_schema",
]
