"""domain.jsonable's conversion, under its old name (the adapters' imports of it)."""

from domain.jsonable import as_text, to_jsonable

__all__ = ["as_text", "to_jsonable"]
