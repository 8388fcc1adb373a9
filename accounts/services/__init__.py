"""Every write to lines, packages and usage goes through these modules."""

from .lines import LineTerminated, apply_package, apply_package_to_locked_line

__all__ = ["LineTerminated", "apply_package", "apply_package_to_locked_line"]
