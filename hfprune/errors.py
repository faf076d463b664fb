"""Typed errors. The CLI turns each into one line and exit status 2; nothing else is user-facing."""


class HfpruneError(Exception):
    """Base class for every error the user can fix. The message says what was wrong and how to fix it."""


class PlanError(HfpruneError):
    """The requested plan is impossible for this checkpoint (index out of range, repeated, removes everything)."""


class CheckpointError(HfpruneError):
    """The checkpoint cannot be pruned as it is (corrupt, pickle-only, unsupported architecture, unknown field)."""


class OutputExistsError(HfpruneError):
    """The output folder exists and --overwrite was not given."""


class HubError(HfpruneError):
    """The Hub refused or could not be reached (missing repo, gated repo, no token, no network)."""


class UnsafeOutputError(OutputExistsError):
    """Writing or replacing the output would destroy an input or a folder hfprune did not write."""


class RecipeError(HfpruneError):
    """The recipe file or the flags that override it are invalid."""


class DataError(HfpruneError):
    """Calibration or training data is missing, empty, too short or malformed."""


class RecoveryError(HfpruneError):
    """Recovery cannot run as asked (no CUDA for QLoRA, bad layer list, nothing to resume)."""


class EvalError(HfpruneError):
    """Evaluation cannot run as asked (unknown task, unreadable model, unreachable task data)."""


class ExportError(HfpruneError):
    """The checkpoint cannot be converted to another runtime's format (GGUF) as asked."""
