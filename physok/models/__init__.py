"""Models: the tokeniser (physok.models.tokeniser) and the processor (physok.models.processor)."""
