"""Local training: models and towers, LoRA, DP-SGD, the trainers the daemon drives."""
