"""Frontend: torch.export of an nn.Module into xrec IR."""
from .errors import FrontendError
from .export import import_exported, import_model

__all__ = ["FrontendError", "import_exported", "import_model"]
