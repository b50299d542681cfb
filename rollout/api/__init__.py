"""Pydantic models of the ``rollout.dev/v1alpha1`` resources; parsing and validation only.

``manifest.parse_manifest`` turns a dict into a ``Rollout`` or ``AnalysisTemplate`` or raises
``InvalidManifest`` listing every problem with its field path. The CRDs in ``crds/`` are
generated from these models (``python -m rollout.api.crdgen``), so the two cannot drift.
"""
