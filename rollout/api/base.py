"""The base of every API model: camelCase field names on the wire, unknown fields rejected.

Unknown fields are errors (not silently dropped) so that a typo such as ``stratgey`` in a
manifest is reported by ``rollout lint`` and by the models, rather than pruned away.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A frozen model whose wire names are camelCase and which forbids unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=False,
        # A field's docstring (the string literal under it) is its description in the CRD,
        # which kubectl explain shows: plain sentences for users. rollout.api.crdgen ignores
        # class docstrings, which are for developers.
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """This model as it appears in a manifest: camelCase, unset optionals omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
