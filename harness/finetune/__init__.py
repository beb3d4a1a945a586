"""harness finetune: LoRA readers of the embedded model, their training data and their merge."""
