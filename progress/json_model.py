"""The base of every JSON shape the service reads or writes: Python names in snake_case,
the contract's names in camelCase, and only the contract's names accepted on input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class JsonModel(BaseModel):
    """A pydantic model whose JSON (and OpenAPI schema) uses camelCase names."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,  # a client sending `module_id` gets the same error as today
        serialize_by_alias=True,
    )
