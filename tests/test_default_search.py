"""The default search learns: with the default α settings (lr, warm-up, batch, no α weight
decay) α leaves uniform and the genotype changes, on a shortened run of the default command."""

import math

import torch

from nas_lightning.run import build

SHORT = [  # the default α optimiser and batch size; fewer cells, channels and steps
    "space.init_channels=4",
    "space.layers=3",
    "trainer.max_epochs=2",  # the default one warm-up epoch, then one epoch of α-steps
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=1",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def test_default_alpha_settings_move_alpha_and_the_genotype(compose_cfg, one_thread):
    default = compose_cfg()
    cfg = compose_cfg(*SHORT)
    assert cfg.algo.arch_optimizer == default.algo.arch_optimizer
    assert cfg.dataset.batch_size == default.dataset.batch_size == 64
    assert cfg.algo.warmup_epochs == default.algo.warmup_epochs == 1
    torch.manual_seed(0)
    datamodule, module, trainer = build(cfg)
    start = module.arch_entropy().item()
    initial = module.export()
    assert math.isclose(start, math.log(8), rel_tol=1e-3)  # α starts uniform over 8 ops
    trainer.fit(module, datamodule=datamodule)
    end = module.arch_entropy().item()
    assert end < 0.95 * start, (start, end)  # 8 α-steps (measured −12 %); the full run has 55
    assert module.export() != initial
