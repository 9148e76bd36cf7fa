"""Shared settings of the end-to-end tests: a tiny model on the tiny synthetic world (fixtures in conftest.py)."""

TINY = [
    "model.d=32",
    "model.L=2",
    "model.heads=2",
    "model.L_rel=2",
    "model.bridge_layers=1",
    "model.lora_r=2",
    "model.embed_dim=32",
    "pretrain.epochs=1",
    "pretrain.batch=64",
    "pretrain.val_items=64",
    "optim.epochs_stage1=1",
    "optim.epochs_stage2=2",
    "optim.warmup_steps=2",
    "data.batch_segments=16",
    "train.log_every=2",
]
