"""Every write to lines, packages and usage goes through these modules."""
from .lines import LineTerminated, apply_package

__all__ = ["LineTerminated", "apply_package"]
