"""Schema name -> reader. Each module holds one schema family; `registry.yaml` names the schema."""

from datamodules.readers.base import Reader
from datamodules.readers.generic import READERS as _GENERIC

READERS: dict[str, Reader] = {**_GENERIC}
