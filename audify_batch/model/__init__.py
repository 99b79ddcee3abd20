"""The model: log-mel frontend, the network, checkpoints with model cards, batched inference."""
