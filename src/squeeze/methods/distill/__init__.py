"""Knowledge distillation: a teacher's outputs train a smaller or compressed student."""
