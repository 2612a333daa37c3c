"""specstress: stress-test AI model specifications.

This face holds what every part shares, the configuration and the error types; the use cases
(set up, start a run, add a model, reconcile) are in `specstress.api`, and each package's own
face names its public API.
"""

from specstress.config import Config, load_config
from specstress.errors import BadModelOutput, InputError, RetryLater

__all__ = ["BadModelOutput", "Config", "InputError", "RetryLater", "load_config"]
