"""llm/traffic"""
