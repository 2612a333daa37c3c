"""Responses: every target model answers every scenario once, including models added later."""
