"""What rm / dpo / kto share: the losses, their trainer and the frozen reference model."""
