"""Batch mode: requests answered through the providers' batch APIs at the batch price.

`coordinator` queues, sends and polls; `apis` speaks OpenAI Batch and Anthropic Message Batches;
`queue` is the SQL of waiting requests and sent jobs.
"""
