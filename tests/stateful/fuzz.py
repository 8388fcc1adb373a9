"""How the stateful models run: small and derandomized inside `make test`; random, shrinking and
remembering their failures under `make fuzz-money` / `make fuzz-lines` (docs/money-model.md)."""

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase


def machine_settings(*, env_prefix: str, database_dir: str, examples: int, steps: int) -> settings:
    """`<env_prefix>_RANDOM=1` runs random examples kept in `database_dir`; `<env_prefix>_SHRINK=1`
    shrinks a failure to a minimal step list."""
    shrink = os.environ.get(f"{env_prefix}_SHRINK") == "1"
    randomized = os.environ.get(f"{env_prefix}_RANDOM") == "1"
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.target, Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=not randomized,
        database=DirectoryBasedExampleDatabase(database_dir) if randomized else None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
        report_multiple_bugs=True,
    )
