"""Training: checkpoint-aware stages, distributed setup and optimisers.

Modules:
    distributed       torchrun process group, device selection, DDP wrapping, teardown
    optim             SOAP (heavyball) and AdamW builders; heavyball's compile switch
    config_overrides  `--set KEY=VALUE` parsing and type checking for config dataclasses
    tokeniser_stage   tokeniser pretraining (setup, build_loader, train_step, validate, train)
    schedule          inverse-sqrt lr schedule with linear warmup and sqrt cooldown, per epoch
    rollout_stage     rollout training (setup, build_model, parallelise (FSDP2), train_step, ...)
    __main__          the CLI: `python -m physok.train tokeniser|rollout --help`

Nothing heavy is imported here, so `python -m physok.train --help` starts quickly.
"""
