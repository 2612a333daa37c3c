"""llm/batches"""
