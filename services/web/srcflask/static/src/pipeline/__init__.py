"""Retraining the writer's GPT-2 on reviewed autodocs (pure ML: no Flask, no database)."""
