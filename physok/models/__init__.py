"""Models: the tokeniser (physok.models.tokeniser); the processor arrives with the rollout model."""
