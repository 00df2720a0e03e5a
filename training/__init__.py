"""Pretraining for the embedded store: the stdlib_2k tokenizer and the weight-sparse trainer.

Run ``python -m training --help`` for the commands.
"""
