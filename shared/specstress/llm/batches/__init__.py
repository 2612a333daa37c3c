"""Batch mode: requests answered through the providers' batch APIs at the batch price.

`coordinator` queues, sends and polls; `apis` speaks OpenAI Batch and Anthropic Message Batches;
`queue` is the SQL of waiting requests and sent jobs.
"""

from specstress.llm.batches.apis import BATCH_APIS
from specstress.llm.batches.coordinator import BatchCoordinator

__all__ = ["BATCH_APIS", "BatchCoordinator"]
